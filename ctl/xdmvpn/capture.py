"""NHRP packets out of capture files (pcap and pcapng, any link type scapy knows:
Ethernet with VLAN tags, Linux cooked v1/v2, raw IP), inside GRE with or without key, or
directly in IP (protocol 54, as tcpdump and tshark decode it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

from .errors import XdmvpnError
from .nhrp.constants import GRE_PROTO_NHRP

#: NHRP directly in IPv4/IPv6: protocol 54 (IANA's NARP, NHRP's predecessor), which
#: tcpdump and tshark dissect as NHRP.
IP_PROTO_NHRP = 54


class _Complaints(logging.Handler):
    """Collects what scapy's reader logs (a cut-short pcapng block is only logged)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


logging.getLogger("scapy.loading").setLevel(logging.ERROR)
from scapy.config import conf                              # noqa: E402
from scapy.error import Scapy_Exception                    # noqa: E402
from scapy.layers.inet import IP                           # noqa: E402
from scapy.layers.inet6 import IPv6                        # noqa: E402
from scapy.layers.l2 import GRE, CookedLinux, Ether        # noqa: E402,F401 (register l2types)
from scapy.packet import Raw                               # noqa: E402
from scapy.utils import RawPcapReader                      # noqa: E402

# Scapy's own console handler is replaced: its complaints are reported per frame.
_SCAPY_COMPLAINTS = _Complaints()
logging.getLogger("scapy").handlers = [_SCAPY_COMPLAINTS]
logging.getLogger("scapy").propagate = False


@dataclass(slots=True)
class NhrpFrame:
    """One frame of a capture that carries NHRP (or failed to be read as such)."""
    frame: int                   # 1-based frame number in the file
    src: str | None = None       # outer (NBMA) addresses
    dst: str | None = None
    gre_key: int | None = None
    payload: bytes = b""         # the NHRP packet: GRE (or IP) payload
    error: str | None = None     # why this frame could not be taken apart
    carrier: str = "gre"         # "gre" (protocol 0x2001) or "ip" (IP protocol 54)


class NhrpCapture:
    """The NHRP frames of one capture file, in order; `frames` counts every frame read so
    far, NHRP or not (after the loop: all of them)."""

    def __init__(self, path: str):
        self.path = path
        self.frames = 0

    def __iter__(self) -> Iterator[NhrpFrame]:
        return _read(self)


def read_nhrp_frames(path: str) -> Iterator[NhrpFrame]:
    """Yield every frame that carries NHRP (GRE protocol 0x2001 or IP protocol 54).
    Other frames are skipped."""
    return iter(NhrpCapture(path))


def _read(capture: NhrpCapture) -> Iterator[NhrpFrame]:
    path = capture.path
    try:
        reader = RawPcapReader(path)
    except FileNotFoundError:
        raise XdmvpnError(f"{path}: no such file") from None
    except (Scapy_Exception, OSError, EOFError, ValueError) as exc:
        raise XdmvpnError(f"{path}: not a pcap or pcapng capture ({exc})") from None
    _SCAPY_COMPLAINTS.messages.clear()
    with reader:
        frame = 0
        while True:
            try:
                item = next(reader)
            except (StopIteration, EOFError):
                if _SCAPY_COMPLAINTS.messages:
                    yield NhrpFrame(frame + 1, error="capture file damaged: "
                                                    + _SCAPY_COMPLAINTS.messages[-1])
                return
            except Exception as exc:          # a damaged file: report and stop reading it
                yield NhrpFrame(frame + 1, error=f"capture file damaged: {exc}")
                return
            if item is None:
                return
            frame += 1
            capture.frames = frame
            if _SCAPY_COMPLAINTS.messages:       # e.g. a record cut short by the file's end
                yield NhrpFrame(frame, error="capture file damaged: "
                                            + _SCAPY_COMPLAINTS.messages.pop())
                _SCAPY_COMPLAINTS.messages.clear()
                continue
            data, meta = item
            linktype = getattr(meta, "linktype", None)
            if linktype is None:
                linktype = reader.linktype
            try:
                found = _nhrp_in_frame(frame, bytes(data), linktype)
            except Exception as exc:          # scapy choked on a malformed frame
                found = NhrpFrame(frame, error=f"cannot dissect frame: {exc}")
            if found is not None:
                yield found


def _nhrp_in_frame(frame: int, data: bytes, linktype: int) -> NhrpFrame | None:
    cls = conf.l2types.num2layer.get(linktype)
    if cls is None:
        return None
    pkt = cls(data)
    ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    if ip is None:
        return None
    in_ip = (ip.proto if isinstance(ip, IP) else ip.nh) == IP_PROTO_NHRP
    gre = None if in_ip else pkt.getlayer(GRE)
    if not in_ip and (gre is None or gre.proto != GRE_PROTO_NHRP):
        return None
    carrier = "ip" if in_ip else "gre"
    src, dst = str(ip.src), str(ip.dst)
    if isinstance(ip, IP) and (ip.frag or ip.flags.MF):
        return NhrpFrame(frame, src, dst, error="IP fragment: not reassembled",
                         carrier=carrier)
    key = gre.key if gre is not None and gre.key_present else None
    payload = ip.payload if gre is None else gre.payload
    raw = payload.load if isinstance(payload, Raw) else bytes(payload)
    return NhrpFrame(frame, src, dst, key, raw, carrier=carrier)
