"""Hand-made NHRP packets for the engine's validation, trust and bounds tests."""

from __future__ import annotations

from ipaddress import ip_address as A

from xdmvpn.engine.build import request_extensions
from xdmvpn.engine.params import NodeParams
from xdmvpn.nhrp import (
    Cie, PurgeRequest, RegistrationRequest, ResolutionReply, ResolutionRequest, encode,
)

SECRET = b"secret"
ROGUE = A("203.0.113.66")
HUB, S1, S2 = A("192.0.2.1"), A("192.0.2.11"), A("192.0.2.12")


def exts(auth=SECRET, nat=None, responder=True):
    p = NodeParams(tunnel_ip=A("10.0.0.99"), prefix_len=24, nbma=ROGUE, auth=auth)
    return request_extensions(p, nat=nat, responder=responder)


def resolution_request(src_proto="10.0.0.66", dst="192.168.2.20", src_nbma=ROGUE, rid=7,
                       auth=SECRET, **kw):
    return ResolutionRequest(src_nbma=src_nbma, src_proto=_a(src_proto), dst_proto=_a(dst),
                             flags=0xc802, request_id=rid,
                             cies=[Cie(prefix_len=0, mtu=1400, holdtime=300)],
                             extensions=kw.pop("extensions", None) or exts(auth, nat=[]), **kw)


def registration_request(proto="10.0.0.66", src_nbma=ROGUE, rid=8, auth=SECRET, unique=True,
                         **kw):
    cies = kw.pop("cies", None) or [Cie(prefix_len=32, mtu=1400, holdtime=300)]
    return RegistrationRequest(src_nbma=src_nbma, src_proto=_a(proto),
                               dst_proto=A("10.0.0.1"), flags=0x8002 if unique else 2,
                               request_id=rid, cies=cies,
                               extensions=exts(auth, nat=[]), **kw)


def purge_request(src_proto, cies, src_nbma=ROGUE, rid=9, auth=SECRET, **kw):
    return PurgeRequest(src_nbma=src_nbma, src_proto=_a(src_proto), dst_proto=A("10.0.0.1"),
                        request_id=rid, cies=cies, extensions=exts(auth, responder=False),
                        **kw)


def resolution_reply(req, via, via_nbma, **kw):
    return ResolutionReply(src_nbma=req.src_nbma, src_proto=req.src_proto,
                           dst_proto=req.dst_proto, request_id=req.request_id,
                           cies=[Cie(prefix_len=32, mtu=1400, holdtime=300,
                                     client_nbma=via_nbma, client_proto=_a(via))],
                           extensions=kw.pop("extensions", None) or exts(), **kw)


def _a(x):
    return A(x) if isinstance(x, str) else x


def send(node, pkt, observed):
    node.receive(encode(pkt), observed)
    return node.fx.take()
