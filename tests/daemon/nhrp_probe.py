"""A resolution-request prober on the underlay (test helper, run as a child process in its
own namespace): asks a node for a tunnel address it answers for (its own, or a LAN behind
it) and reports what came back, decoded with the codec.

    python nhrp_probe.py OWN_NBMA TARGET_NBMA DST KEY AUTH burst N
        N requests as fast as the socket sends them, then a last one a second later (it
        carries the target socket's drop count up to date), then replies for 5 s
    python nhrp_probe.py OWN_NBMA TARGET_NBMA DST KEY AUTH steady SECONDS INTERVAL
        one request every INTERVAL seconds for SECONDS; every reply's round-trip time

Prints one JSON line: sent, answered (distinct request ids replied to), dropped (replies the
kernel dropped on this socket's full buffer), rtt_max, rtt_p99.
Request ids start at a random point so that two runs never meet."""

from __future__ import annotations

import json
import random
import select
import sys
import time
from ipaddress import ip_address

from xdmvpn.nhrp import AuthExtension, Cie, PacketType, ResolutionRequest, decode, encode, \
    end_extension
from xdmvpn.transport import GreSocket


def request(own, dst, rid: int, auth: bytes) -> bytes:
    return encode(ResolutionRequest(
        src_nbma=own, src_proto=ip_address("172.16.0.99"), dst_proto=dst, hop_count=8,
        flags=0xC802, request_id=rid, cies=[Cie(mtu=1400, holdtime=600)],
        extensions=[AuthExtension(1, auth), end_extension()]))


def drain(sock: GreSocket, sent_at: dict, rtts: dict, wait: float) -> None:
    ready, _, _ = select.select([sock], [], [], wait)
    if not ready:
        return
    while (got := sock.recv()) is not None:
        data, _ = got
        if data is None:
            continue
        try:
            pkt = decode(data, strict=False)
        except ValueError:
            continue
        if pkt.type == PacketType.RESOLUTION_REPLY and pkt.request_id in sent_at:
            rtts.setdefault(pkt.request_id, time.monotonic() - sent_at[pkt.request_id])


def main(argv: list[str]) -> dict:
    own, target, dst = ip_address(argv[0]), ip_address(argv[1]), ip_address(argv[2])
    key, auth, mode = int(argv[3]), argv[4].encode(), argv[5]
    sock = GreSocket(own, key, device="eth0")
    rid = random.randrange(1 << 20, 1 << 30)
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    if mode == "burst":
        packets = [request(own, dst, rid + i, auth) for i in range(int(argv[6]))]
        t0 = time.monotonic()
        for i, packet in enumerate(packets):
            sent_at[rid + i] = t0
            while not sock.send(target, packet):       # a full send buffer: try again
                time.sleep(0.0001)
            if i % 256 == 255:
                drain(sock, sent_at, rtts, 0)          # replies must not pile up here
        time.sleep(1.0)
        last = rid + len(packets)
        sent_at[last] = time.monotonic()
        sock.send(target, request(own, dst, last, auth))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            drain(sock, sent_at, rtts, 0.1)
    else:
        seconds, interval = float(argv[6]), float(argv[7])
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            sent_at[rid + i] = time.monotonic()
            sock.send(target, request(own, dst, rid + i, auth))
            i += 1
            next_at = sent_at[rid + i - 1] + interval
            while (left := next_at - time.monotonic()) > 0:
                drain(sock, sent_at, rtts, left)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and len(rtts) < len(sent_at):
            drain(sock, sent_at, rtts, 0.1)
    times = sorted(rtts.values())
    return {"sent": len(sent_at), "answered": len(rtts), "dropped": sock.dropped,
            "rtt_max": times[-1] if times else None,
            "rtt_p99": times[int(len(times) * 0.99) - 1] if times else None}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])), flush=True)
