"""A set of NHRP messages covering every packet type and extension (test helper)."""

from ipaddress import ip_address as A

from xdmvpn.nhrp import (
    Afn, AuthExtension, Cie, CieListExtension, ErrorIndication, Extension, ProtocolType,
    PurgeReply, PurgeRequest, RegistrationReply, RegistrationRequest, ResolutionReply,
    ResolutionRequest, TrafficIndication, VendorExtension, encode, end_extension,
)

SPOKE = Cie(code=0, prefix_len=32, mtu=1400, holdtime=300, client_nbma=A("198.51.100.7"),
            client_proto=A("10.0.0.7"), preference=5)
HUB = Cie(code=0, prefix_len=0, mtu=1400, holdtime=7200, client_nbma=A("198.51.100.1"),
          client_proto=A("10.0.0.1"))
V6 = Cie(code=14, prefix_len=128, mtu=1280, holdtime=600, client_nbma=A("2001:db8::7"),
         client_proto=A("fd00::7"))


def _common_exts(with_nat=True):
    exts = [CieListExtension(3, True, []), CieListExtension(4, True, [HUB]),
            CieListExtension(5, True, [HUB, HUB]), AuthExtension(1, b"secret12")]
    if with_nat:
        exts.append(CieListExtension(9, False, [SPOKE]))
    return exts + [end_extension()]


def _v4(cls, **kw):
    base = dict(src_nbma=A("198.51.100.7"), src_proto=A("10.0.0.7"), dst_proto=A("10.0.0.1"))
    base.update(kw)
    return cls(**base)


def samples():
    """(name, message) pairs."""
    reg = _v4(RegistrationRequest, flags=0x8002, request_id=77, cies=[SPOKE],
              extensions=_common_exts())
    return [
        ("resolution_request", _v4(ResolutionRequest, flags=0xC802, request_id=5,
                                   dst_proto=A("10.0.0.9"), cies=[Cie(mtu=1514, holdtime=7200)],
                                   extensions=_common_exts())),
        ("resolution_reply", _v4(ResolutionReply, flags=0xF802, request_id=5,
                                 cies=[SPOKE], extensions=_common_exts())),
        ("registration_request", reg),
        ("registration_reply", _v4(RegistrationReply, flags=0x8002, request_id=77,
                                   cies=[SPOKE], extensions=_common_exts())),
        ("purge_request", _v4(PurgeRequest, flags=0x8000, request_id=9,
                              cies=[Cie(prefix_len=32, client_proto=A("10.0.0.9"))])),
        ("purge_reply", _v4(PurgeReply, request_id=9,
                            cies=[Cie(prefix_len=32, client_proto=A("10.0.0.9"))])),
        ("error_indication", _v4(ErrorIndication, error_code=3, error_offset=0,
                                 contents=encode(reg)[:40])),
        ("traffic_indication", _v4(TrafficIndication, hop_count=1, dst_proto=A("10.0.1.5"),
                                   contents=bytes.fromhex("450000540000400040010000"
                                                          "0a0001050a000205") + bytes(20),
                                   extensions=_common_exts(with_nat=False))),
        ("ipv6_resolution_reply", ResolutionReply(
            afn=Afn.IPV6, protocol_type=ProtocolType.IPV6, src_nbma=A("2001:db8::1"),
            src_proto=A("fd00::1"), dst_proto=A("fd00::2"), flags=0xF800,
            request_id=0xDEADBEEF, cies=[V6],
            extensions=[CieListExtension(3, True, [V6]), end_extension()])),
        ("vendor_and_unknown_extensions", _v4(RegistrationRequest, request_id=1, extensions=[
            VendorExtension(0x00000C, b"\x01\x02"), Extension(0x1234, False, b"\xaa\xbb\xcc"),
            Extension(0x2001, True, b""), end_extension()])),
        ("odd_length", _v4(RegistrationRequest, request_id=3, extensions=[
            AuthExtension(1, b"abc"), end_extension()])),
        ("no_extensions", _v4(RegistrationRequest, request_id=4, cies=[SPOKE])),
    ]
