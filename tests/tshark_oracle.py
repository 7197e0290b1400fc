"""tshark as an independent NHRP decoder (test helper).

Runs `tshark -T pdml` and turns each top-level NHRP protocol tree into plain data with the
same keys as `xdmvpn decode --json`, addresses as bytes so both sides compare exactly.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import xml.etree.ElementTree as ET

TSHARK_OPTS = ["-o", "nhrp.auth_ext_has_addr:FALSE"]   # Cisco's auth ext has no address

_ADDR_PREFIXES = {
    "nhrp.src.nbma.addr": "src_nbma",
    "nhrp.src.prot.addr": "src_proto",
    "nhrp.dst.prot.addr": "dst_proto",
    "nhrp.client.nbma.addr": "client_nbma",
    "nhrp.client.prot.addr": "client_proto",
}
_INT_FIELDS = {
    "nhrp.hdr.op.type": "type", "nhrp.hdr.hopcnt": "hop_count", "nhrp.hdr.pktsz": "packet_size",
    "nhrp.hdr.chksum": "checksum", "nhrp.hdr.extoff": "extension_offset",
    "nhrp.flags": "flags", "nhrp.reqid": "request_id", "nhrp.err.code": "error_code",
    "nhrp.err.offset": "error_offset", "nhrp.hdr.afn": "afn",
    "nhrp.hdr.pro.type": "protocol_type",
}
_CIE_INT_FIELDS = {
    "nhrp.code": "code", "nhrp.prefix": "prefix_len", "nhrp.mtu": "mtu",
    "nhrp.htime": "holdtime", "nhrp.pref": "preference",
}


def tshark_path() -> str:
    path = shutil.which("tshark")
    if not path:
        raise RuntimeError("tshark is not installed: run ./setup.sh")
    return path


def tshark_nhrp(capture: str) -> dict[int, list[dict]]:
    """frame number -> the NHRP packets tshark found at top level in that frame."""
    out = subprocess.run([tshark_path(), "-r", str(capture), *TSHARK_OPTS, "-T", "pdml"],
                         check=True, capture_output=True, timeout=120).stdout
    frames: dict[int, list[dict]] = {}
    for packet in ET.fromstring(out).iter("packet"):
        num = int(packet.find("proto[@name='geninfo']/field[@name='num']").get("show"))
        found = [_nhrp(p) for p in packet.findall("proto[@name='nhrp']")]
        if found:
            frames[num] = found
    return frames


def _int(text: str) -> int:
    return int(text, 16) if text.startswith("0x") else int(text)


def _addr_key(name: str) -> str | None:
    for prefix, key in _ADDR_PREFIXES.items():
        if name.startswith(prefix):
            return key
    return None


def _fields(node, into: dict, ints: dict) -> None:
    for f in node.findall("field"):
        name = f.get("name", "")
        if name in ints:
            into[ints[name]] = _int(f.get("show"))
        elif (key := _addr_key(name)) is not None:
            into[key] = bytes.fromhex(f.get("value", ""))


def _cie(node) -> dict:
    cie = {"client_nbma": None, "client_proto": None}
    _fields(node, cie, _CIE_INT_FIELDS)
    return cie


def _nhrp(proto) -> dict:
    pkt: dict = {"src_nbma": None, "src_proto": None, "dst_proto": None, "cies": [],
                 "extensions": [], "flags": None, "request_id": None}
    for part in proto.findall("field"):
        title = part.get("show", "")
        if title == "NHRP Fixed Header":
            _fields(part, pkt, _INT_FIELDS)
            status = part.find("field[@name='nhrp.hdr.chksum.status']")
            pkt["checksum_ok"] = {"1": True, "0": False}.get(
                status.get("show") if status is not None else "", None)
        elif title == "NHRP Mandatory Part":
            _fields(part, pkt, _INT_FIELDS)
            pkt["cies"] = [_cie(c) for c in part.findall("field[@show='Client Information Entry']")]
        elif part.find("field[@name='nhrp.ext.type']") is not None:
            ext = {
                "type": _int(part.find("field[@name='nhrp.ext.type']").get("show")),
                "compulsory": part.find("field[@name='nhrp.ext.c']").get("show") == "1",
                "length": _int(part.find("field[@name='nhrp.ext.len']").get("show")),
            }
            cies = part.findall("field[@show='Client Information Entry']")
            if cies:
                ext["cies"] = [_cie(c) for c in cies]
            pkt["extensions"].append(ext)
    return pkt


def addr_bytes(text: str | None) -> bytes | None:
    """Our JSON's address text back to bytes (IPv4/IPv6 text, or hex octets)."""
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return bytes.fromhex(text.replace(":", ""))


def ours_comparable(obj: dict) -> dict:
    """Project one `xdmvpn decode --json` object onto the oracle's keys and types."""
    def cie(c):
        return {"code": c["code"], "prefix_len": c["prefix_len"], "mtu": c["mtu"],
                "holdtime": c["holdtime"], "preference": c["preference"],
                "client_nbma": addr_bytes(c["client_nbma"]),
                "client_proto": addr_bytes(c["client_proto"])}
    out = {k: obj[k] for k in ("type", "hop_count", "packet_size", "checksum", "checksum_ok",
                               "extension_offset", "flags", "request_id", "afn",
                               "protocol_type")}
    for k in ("src_nbma", "src_proto", "dst_proto"):
        out[k] = addr_bytes(obj[k])
    for k in ("error_code", "error_offset"):
        if k in obj:
            out[k] = obj[k]
    out["cies"] = [cie(c) for c in obj["cies"]]
    exts = []
    for e in obj["extensions"]:
        d = {"type": e["type"], "compulsory": e["compulsory"], "length": e["length"]}
        if e.get("cies"):
            d["cies"] = [cie(c) for c in e["cies"]]
        exts.append(d)
    out["extensions"] = exts
    return out


def tshark_comparable(pkt: dict) -> dict:
    """The oracle's dict with empty addresses as None, like ours."""
    def norm(v):
        return v if v else None
    out = dict(pkt)
    for k in ("src_nbma", "src_proto", "dst_proto"):
        out[k] = norm(out.get(k))
    def cie(c):
        c = dict(c)
        c["client_nbma"] = norm(c.get("client_nbma"))
        c["client_proto"] = norm(c.get("client_proto"))
        return c
    out["cies"] = [cie(c) for c in out["cies"]]
    out["extensions"] = [{**e, **({"cies": [cie(c) for c in e["cies"]]} if "cies" in e else {})}
                         for e in out["extensions"]]
    return out
