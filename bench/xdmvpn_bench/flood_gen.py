"""The flood's generator: an XDP program run in live-frames mode (BPF_PROG_TEST_RUN with
BPF_F_TEST_XDP_LIVE_FRAMES) on the generator's veth end; XDP_TX puts every frame into the
hub's receive ring. Each frame is the template (an Ethernet + IPv4 + GRE + NHRP packet)
with a random IPv4 source in a /FLOOD_BITS, the IPv4 checksum recomputed and, optionally,
two NHRP fields rewritten with the NHRP checksum updated (RFC 1624):

  claim: the NHRP source NBMA address := the random outer source (the request claims the
         address it came from)
  proto: the NHRP source protocol address := base + a random number below `count`

Run as a child process (`python -m xdmvpn_bench.flood_gen`) inside the generator's
namespace: it compiles the program, floods for the given seconds in runs of `chunk`
frames, and prints one JSON line (frames offered, seconds). Its own CPU is the
generator's; the hub's receive side runs where veth schedules it."""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

NHRP_AT = 14 + 20 + 8                 # Ethernet, IPv4, GRE with key
CHECKSUM_AT = NHRP_AT + 12
CLAIM_AT = NHRP_AT + 28               # source NBMA address (IPv4 NBMA, IPv4 protocol)
PROTO_AT = NHRP_AT + 32               # source protocol address

PROGRAM = r"""
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>

struct flood_tmpl { u8 data[FLOOD_LEN]; };
BPF_ARRAY(flood_tmpl, struct flood_tmpl, 1);

static __always_inline u16 fold(u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (u16)s;
}

static __always_inline void put32(void *data, int at, __be32 v, u16 *csum)
{
	__be32 old = *(__be32 *)(data + at);
	u64 s = bpf_csum_diff(&old, 4, &v, 4, (u16)~*csum);

	*(__be32 *)(data + at) = v;
	*csum = ~fold(s);
}

int flood_gen(struct xdp_md *ctx)
{
	u32 zero = 0;
	struct flood_tmpl *t = flood_tmpl.lookup(&zero);
	void *data, *end;
	struct iphdr *ip;
	__be32 src;

	if (!t || bpf_xdp_store_bytes(ctx, 0, t->data, FLOOD_LEN))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + FLOOD_LEN > end)
		return XDP_ABORTED;
	ip = data + ETH_HLEN;
	src = bpf_htonl(FLOOD_NET | (bpf_get_prandom_u32() & FLOOD_MASK));
	ip->saddr = src;
	ip->check = 0;
	ip->check = ~fold(bpf_csum_diff(0, 0, (__be32 *)ip, 20, 0));
#if FLOOD_CLAIM || FLOOD_PROTO_COUNT
	u16 *csum = data + CHECKSUM_AT;
#endif
#if FLOOD_CLAIM
	put32(data, CLAIM_AT, src, csum);
#endif
#if FLOOD_PROTO_COUNT
	put32(data, PROTO_AT, bpf_htonl(FLOOD_PROTO_BASE + bpf_get_prandom_u32() % FLOOD_PROTO_COUNT),
	      csum);
#endif
	return XDP_TX;
}
"""


def load(frame: bytes, net: str, bits: int, claim: bool, proto_base: int, proto_count: int):
    """The generator compiled for `frame` and loaded, its template written: (the bcc
    module, the XDP program)."""
    from bcc import BPF

    from xdmvpn.dataplane import build

    net_i = struct.unpack("!I", socket.inet_aton(net))[0]
    mask = (1 << (32 - int(bits))) - 1
    cflags = [f"-DFLOOD_LEN={len(frame)}", f"-DFLOOD_NET={net_i & ~mask}u",
              f"-DFLOOD_MASK={mask}u", f"-DFLOOD_CLAIM={int(claim)}",
              f"-DFLOOD_PROTO_BASE={int(proto_base)}u",
              f"-DFLOOD_PROTO_COUNT={int(proto_count)}u",
              f"-DCHECKSUM_AT={CHECKSUM_AT}", f"-DCLAIM_AT={CLAIM_AT}",
              f"-DPROTO_AT={PROTO_AT}"]
    build.check_environment()
    b = BPF(text=PROGRAM.encode(), cflags=cflags)
    fn = b.load_func(b"flood_gen", BPF.XDP)
    t = b[b"flood_tmpl"]
    leaf = t.Leaf()
    for i, byte in enumerate(frame):
        leaf.data[i] = byte
    t[t.Key(0)] = leaf
    return b, fn


def main(argv: list[str]) -> int:
    (frame_hex, ifname, net, bits, claim, proto_base, proto_count, seconds,
     chunk) = argv
    from .testrun import run_live

    frame = bytes.fromhex(frame_hex)
    b, fn = load(frame, net, int(bits), claim == "1", int(proto_base), int(proto_count))
    ifindex = socket.if_nametoindex(ifname)
    print("ready", flush=True)
    offered = 0
    t0 = time.monotonic()
    end = t0 + float(seconds)
    while time.monotonic() < end:
        run_live(fn.fd, frame, int(chunk), ifindex)
        offered += int(chunk)
    took = time.monotonic() - t0
    print(json.dumps({"offered": offered, "seconds": round(took, 3),
                      "offered_per_second": round(offered / took)}), flush=True)
    b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
