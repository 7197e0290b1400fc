"""A throw-away CA and node certificates made with the openssl command (test helper)."""

from __future__ import annotations

import subprocess
from pathlib import Path

O = "xdmvpn test"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(d: Path) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    key, crt = d / "ca.key", d / "ca.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2",
             "-subj", f"/O={O}/CN={O} CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return crt, key


def make_node(d: Path, ca: tuple[Path, Path], name: str, cn: str) -> tuple[Path, Path]:
    """A node key and certificate with subject "O=xdmvpn test, CN=<cn>"."""
    key, csr, crt = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/O={O}/CN={cn}")
    ext = d / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return crt, key


def ipsec_lines(crt: Path, key: Path, ca: Path) -> str:
    return (f'certificate = "{crt}"\nprivate-key = "{key}"\nca-certificate = "{ca}"\n')
