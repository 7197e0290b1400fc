"""Can this kernel carry ESP? (The machine this was written on has XFRM but no esp4: IKE
works, installing an ESP SA fails with "Requested type not found".)

The check installs a throw-away transport-mode ESP SA (null cipher) in a network namespace
of its own (`unshare --net`), so nothing is left behind and no namespace is touched."""

from __future__ import annotations

import functools
import subprocess

NO_ESP = "this kernel has no ESP (esp4/xfrm): runs on the Vagrant boxes"

_PROBE = ("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 mode transport "
          "enc cipher_null '' auth 'hmac(sha256)' "
          "0x0000000000000000000000000000000000000000000000000000000000000000")


@functools.lru_cache(maxsize=1)
def esp_missing() -> str | None:
    """None when the kernel installs ESP SAs; else why not (one line, NO_ESP first)."""
    try:
        res = subprocess.run(["unshare", "--net", "sh", "-c", _PROBE], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{NO_ESP} (the probe did not run: {exc})"
    if res.returncode == 0:
        return None
    why = (res.stderr.strip().splitlines() or ["failed"])[-1]
    return f"{NO_ESP} (installing an ESP SA: {why})"
