"""An XDP program that passes everything, for the underlay bridge's ports.

A veth delivers frames that its peer sends with XDP_TX (the hub's hairpin) only when the
receiving end has an XDP program attached (docs/dataplane.md); on real NICs nothing like
this is needed. The program is two instructions, loaded through libbpf (a dependency of
iproute2, reached by xdmvpn.dataplane.libbpf): no compiler, no kernel headers, about a
millisecond. The daemon tests and the control benchmark use it for their bridges too.
"""

from __future__ import annotations

import os
import socket
import struct

from ..dataplane import libbpf
from ..errors import XdmvpnError

BPF_PROG_TYPE_XDP = 6
XDP_PASS = 2
XDP_FLAGS_DRV_MODE = 1 << 2
# r0 = XDP_PASS; exit
PASS_INSNS = struct.pack("<BBhi", 0xB7, 0, 0, XDP_PASS) + struct.pack("<BBhi", 0x95, 0, 0, 0)


def attach_pass(ifnames: list[str]) -> None:
    """Attach the pass program (native mode) to each interface of the calling thread's
    network namespace."""
    fd = libbpf.function("bpf_prog_load")(BPF_PROG_TYPE_XDP, b"xdmvpn_lab_pass", b"GPL",
                                          PASS_INSNS, len(PASS_INSNS) // 8, None)
    if fd < 0:
        raise XdmvpnError(f"cannot load an XDP program: {os.strerror(-fd)} (needs root "
                          "and BPF)")
    try:
        attach = libbpf.function("bpf_xdp_attach")
        for name in ifnames:
            rc = attach(socket.if_nametoindex(name), fd, XDP_FLAGS_DRV_MODE, None)
            if rc < 0:
                raise XdmvpnError(f"cannot attach XDP to {name}: {os.strerror(-rc)}")
    finally:
        os.close(fd)          # the interfaces hold the program now
