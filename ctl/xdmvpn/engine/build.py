"""Building the packets a node sends, with the extension set Cisco routers send."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from dataclasses import dataclass
from typing import TypedDict

from ..inet import IPAddress
from ..nhrp import (
    Afn, AuthExtension, Cie, CieListExtension, ExtType, Packet, ProtocolType, end_extension,
)
from ..nhrp.codec import encode_cie, encode_extension
from ..nhrp.constants import AUTH_TYPE_CLEARTEXT
from ..nhrp.messages import AnyExtension
from ..nhrp.wire import Address
from .params import NodeParams

Extensions = list[AnyExtension]


class Families(TypedDict):
    afn: int
    protocol_type: int


def families(p: NodeParams, peer: IPAddress | None = None) -> Families:
    """The header fields naming our address families: the NBMA's (afn, that of the peer
    the packet goes to: a hub on both underlays speaks to each peer in its own) and the
    tunnel's (protocol type), so that an IPv6 overlay or underlay says so on the wire."""
    nbma = p.nbma if peer is None else p.nbma_for(peer.version)
    return Families(afn=Afn.IPV4 if nbma.version == 4 else Afn.IPV6,
                    protocol_type=ProtocolType.IPV4 if p.tunnel_ip.version == 4
                    else ProtocolType.IPV6)


def src_nbma(p: NodeParams, peer: IPAddress) -> IPAddress:
    """Our NBMA address as a packet to the peer at `peer` gives it."""
    return p.nbma_for(peer.version)


def afn_version(afn: int) -> int:
    """The IP version of an NBMA address family number (validation admits only these)."""
    return 6 if afn == Afn.IPV6 else 4


def own_cie(p: NodeParams, prefix_len: int = 32, holdtime: int | None = None,
            code: int = 0, nbma_version: int | None = None) -> Cie:
    """Our own CIE; its NBMA address of the family `nbma_version` (that of the packet it
    goes in), by default our primary one."""
    nbma = p.nbma if nbma_version is None else p.nbma_for(nbma_version)
    return Cie(code=code, prefix_len=prefix_len, mtu=p.mtu,
               holdtime=p.holdtime if holdtime is None else holdtime,
               client_nbma=nbma, client_proto=p.tunnel_ip)


@dataclass(frozen=True, slots=True)
class ReplyPieces:
    """The parts of our registration replies that only the configuration decides, encoded
    once per configuration (the registration fast path writes replies from them)."""
    dst_proto: bytes          # our protocol address
    responder: bytes          # body of the responder address extension: our own CIE
    auth: bytes               # our authentication extension, b"" without a secret
    nat_head: bytes           # a NAT extension CIE for an IPv4 client, up to its addresses


def reply_pieces(p: NodeParams) -> ReplyPieces:
    """What the full path (registration_server.on_request) puts in every reply, encoded."""
    bits = p.tunnel_ip.max_prefixlen
    nat = encode_cie(Cie(prefix_len=bits, mtu=p.mtu, client_nbma=IPv4Address(0),
                         client_proto=IPv4Address(0)))
    return ReplyPieces(p.tunnel_ip.packed,
                       encode_cie(own_cie(p, prefix_len=bits, nbma_version=4)),
                       b"".join(encode_extension(e) for e in auth_ext(p)), nat[:-8])


def auth_ext(p: NodeParams) -> Extensions:
    return [AuthExtension(AUTH_TYPE_CLEARTEXT, p.auth)] if p.auth is not None else []


def request_extensions(p: NodeParams, *, responder: bool = True,
                       nat: list[Cie] | None = None) -> Extensions:
    """responder (empty), forward and reverse transit (empty), auth, NAT, end."""
    exts: Extensions = [CieListExtension(ExtType.RESPONDER_ADDRESS, True, [])] \
        if responder else []
    exts += [CieListExtension(ExtType.FORWARD_TRANSIT_NHS, True, []),
             CieListExtension(ExtType.REVERSE_TRANSIT_NHS, True, [])]
    exts += auth_ext(p)
    if nat is not None:
        exts.append(CieListExtension(ExtType.NAT_ADDRESS, False, nat))
    exts.append(end_extension())
    return exts


def with_own_auth(p: NodeParams, exts: Extensions) -> Extensions:
    """Regenerate the authentication extension for this hop, exactly once, where it was
    (or, when absent, before the NAT and End extensions, where Cisco puts it)."""
    where = next((i for i, e in enumerate(exts) if e.type == ExtType.AUTHENTICATION), None)
    out = [e for e in exts if e.type != ExtType.AUTHENTICATION]
    if where is None:
        where = next((i for i, e in enumerate(out)
                      if e.type in (ExtType.NAT_ADDRESS, ExtType.END)), len(out))
    out[where:where] = auth_ext(p)
    return out


def cie_list(pkt: Packet, ext_type: int) -> list[Cie] | None:
    ext = pkt.extension(ext_type)
    return ext.cies if isinstance(ext, CieListExtension) else None


def replace_cie_list(exts: Extensions, ext_type: int, cies: list[Cie],
                     compulsory: bool = True) -> Extensions:
    out: Extensions = []
    done = False
    for e in exts:
        if e.type == ext_type:
            out.append(CieListExtension(ext_type, e.compulsory, cies))
            done = True
        else:
            out.append(e)
    if not done:
        end = next((i for i, e in enumerate(out) if e.type == ExtType.END), len(out))
        out.insert(end, CieListExtension(ext_type, compulsory, cies))
    return out


def nat_nbma(pkt: Packet, proto: IPAddress | None) -> IPAddress | None:
    """The post-NAT NBMA address a NAT extension CIE gives for `proto` (Cisco), if any."""
    if proto is None:
        return None
    for cie in cie_list(pkt, ExtType.NAT_ADDRESS) or []:
        nbma = ip(cie.client_nbma)
        if cie.client_proto == proto and nbma is not None:
            return nbma
    return None


def ip(addr: Address) -> IPAddress | None:
    """An address field as an IP address; None when absent or of another length."""
    return addr if isinstance(addr, (IPv4Address, IPv6Address)) else None


def vouch(p: NodeParams, pkt: Packet, exts: Extensions, proto: IPAddress,
          nbma: IPAddress) -> Extensions:
    """exts with a NAT extension CIE saying that proto is at nbma, as we observed it (or
    registered it), in place of any other CIE for proto (Cisco's NAT extension)."""
    others = [c for c in cie_list(pkt, ExtType.NAT_ADDRESS) or [] if c.client_proto != proto]
    return replace_cie_list(exts, ExtType.NAT_ADDRESS, others + [Cie(
        prefix_len=proto.max_prefixlen, mtu=p.mtu, client_nbma=nbma, client_proto=proto)],
        compulsory=False)


def unvouch(pkt: Packet, exts: Extensions, proto: IPAddress) -> Extensions:
    """exts without the NAT extension CIEs that say where proto is."""
    others = [c for c in cie_list(pkt, ExtType.NAT_ADDRESS) or [] if c.client_proto != proto]
    return replace_cie_list(exts, ExtType.NAT_ADDRESS, others, compulsory=False)
