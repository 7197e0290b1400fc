"""Codec benchmark: the cost of decoding and encoding one registration request with
authentication and NAT extensions, against a bare struct.unpack of the fixed header
measured in the same run (read the figures as ratios: the machine is noisy)."""

from __future__ import annotations

import statistics
import struct
import time
from ipaddress import ip_address

from xdmvpn.nhrp import (
    AuthExtension, Cie, CieListExtension, Flag, RegistrationRequest, decode, encode,
    end_extension,
)

GOAL_US = 20.0   # decode + encode, one core


def sample_registration() -> bytes:
    """A spoke behind NAT registering with a hub, as a Cisco spoke sends it."""
    spoke = Cie(code=0, prefix_len=32, mtu=1400, holdtime=7200,
                client_nbma=ip_address("198.51.100.77"), client_proto=ip_address("10.0.0.77"))
    msg = RegistrationRequest(
        src_nbma=ip_address("192.168.1.77"), src_proto=ip_address("10.0.0.77"),
        dst_proto=ip_address("10.0.0.1"), flags=Flag.U_REG | Flag.CISCO_NAT, request_id=4242,
        cies=[Cie(prefix_len=32, mtu=1400, holdtime=7200)],
        extensions=[CieListExtension(3, True, []), CieListExtension(4, True, []),
                    CieListExtension(5, True, []), AuthExtension(1, b"dmvpnkey"),
                    CieListExtension(9, False, [spoke]), end_extension()])
    return encode(msg)


def _per_call_us(fn, arg, seconds: float) -> float:
    """Median over 5 rounds of the mean time per call, in microseconds."""
    n = 1000
    while True:                      # calibrate: a round lasts about seconds/5
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        took = time.perf_counter() - t0
        if took >= seconds / 5 / 4:
            break
        n *= 2
    n = max(int(n * (seconds / 5) / took), 100)
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(rounds)


def run(args) -> dict:
    seconds = getattr(args, "seconds", 1.0)
    wire = sample_registration()
    msg = decode(wire)
    assert encode(msg) == wire
    fixed = struct.Struct("!HH5sBHHHBBBB")
    baseline = _per_call_us(lambda b: fixed.unpack_from(b, 0), wire, seconds)
    dec = _per_call_us(decode, wire, seconds)
    enc = _per_call_us(encode, msg, seconds)
    return {
        "bench": "codec",
        "packet": "registration request with authentication and NAT extensions",
        "packet_bytes": len(wire),
        "decode_us_per_packet": round(dec, 3),
        "encode_us_per_packet": round(enc, 3),
        "roundtrip_us_per_packet": round(dec + enc, 3),
        "baseline_struct_unpack_us": round(baseline, 4),
        "decode_vs_baseline": round(dec / baseline, 1),
        "encode_vs_baseline": round(enc / baseline, 1),
        "goal_roundtrip_us": GOAL_US,
        "meets_goal": dec + enc <= GOAL_US,
    }
