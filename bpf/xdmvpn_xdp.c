/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn XDP programs.
 *
 * xdmvpn_xdp_underlay (on the underlay interface):
 *   GRE v0 with our key to our NBMA address:
 *     NHRP (0x2001)            -> per-sender token bucket, XDP_PASS to the controller
 *     IPv4 for a mapped peer   -> hairpin: rewrite outer header, XDP_TX (+ trigger)
 *     IPv4 otherwise           -> decap: strip outer headers, redirect into dmvpn0-dp
 *                                 so that the inner packet arrives on dmvpn0
 *   anything else              -> XDP_PASS untouched (counted by reason)
 *   malformed GRE that is ours -> XDP_DROP (counted by reason)
 * xdmvpn_xdp_pass (on dmvpn0): lets veth deliver redirected frames.
 */
#include "xdmvpn_lib.h"

/* Strip outer IPv4 + GRE (strip bytes after Ethernet), give the inner packet a
 * fresh Ethernet header addressed to dmvpn0 and redirect it into the pair. */
static __always_inline int xdmvpn_decap(struct xdp_md *ctx, int strip, __u64 bytes)
{
	void *data, *data_end;
	struct ethhdr *eth;

	if (bpf_xdp_adjust_head(ctx, strip)) {
		xdmvpn_count_drop(XDMVPN_DROP_HELPER, bytes);
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end) {
		xdmvpn_count_drop(XDMVPN_DROP_HELPER, bytes);
		return XDP_DROP;
	}
	xdmvpn_set_mac(eth->h_dest, XDMVPN_OVERLAY_MAC);
	xdmvpn_set_mac(eth->h_source, XDMVPN_OVERLAY_DP_MAC);
	eth->h_proto = xdmvpn_htons(ETH_P_IP);
	xdmvpn_count_path(XDMVPN_PATH_DECAP, bytes);
	return bpf_redirect(XDMVPN_OVERLAY_IFINDEX, 0);
}

/* Token bucket per sender NBMA (Cisco "ip nhrp max-send").  Racy across
 * CPUs by design: a lost update gives at most one extra packet. */
static __always_inline int xdmvpn_nhrp_allow(__be32 src)
{
	const __u64 cap = XDMVPN_NHRP_BURST * XDMVPN_NHRP_COST_NS;
	__u64 now = bpf_ktime_get_coarse_ns();
	struct xdmvpn_bucket *b = xdmvpn_nhrp_buckets.lookup(&src);
	__u64 credit;

	if (!b) {
		struct xdmvpn_bucket nb = { .credit_ns = cap - XDMVPN_NHRP_COST_NS,
					    .last_ns = now };

		xdmvpn_nhrp_buckets.update(&src, &nb);
		return 1;
	}
	credit = b->credit_ns + (now - b->last_ns);
	if (credit > cap)
		credit = cap;
	b->last_ns = now;
	if (credit < XDMVPN_NHRP_COST_NS) {
		b->credit_ns = credit;
		return 0;
	}
	b->credit_ns = credit - XDMVPN_NHRP_COST_NS;
	return 1;
}

/* Traffic-indication trigger: sender NBMA, inner pair, start of the packet. */
static __always_inline void xdmvpn_trigger(struct xdp_md *ctx, __be32 sender,
					   __be32 src, __be32 dst, __u32 off,
					   __u32 avail, __u64 now)
{
	struct xdmvpn_event *ev;
	__u32 n = avail;

	if (!xdmvpn_rl_allow(src, dst, now, XDMVPN_TRIGGER_INTERVAL_NS)) {
		xdmvpn_count_path(XDMVPN_PATH_TRIGGER_HELD, 0);
		return;
	}
	ev = xdmvpn_event_start(XDMVPN_EV_TRIGGER, sender, src, dst, &n);
	if (!ev)
		return;
	if (bpf_xdp_load_bytes(ctx, off, ev->data, n))
		ev->len = 0;
	xdmvpn_events.ringbuf_submit(ev, 0);
	xdmvpn_count_path(XDMVPN_PATH_TRIGGER, 0);
}

static __always_inline int xdmvpn_underlay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xdmvpn_cursor c = { .pos = data, .end = data_end };
	__u64 bytes = data_end - data;
	struct xdmvpn_gre_info gi;
	struct iphdr *ip, *inner;
	struct xdmvpn_peer *peer;
	struct ethhdr *eth;
	int ihl, rc;

	if (xdmvpn_parse_eth(&c, &eth) != xdmvpn_htons(ETH_P_IP)) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_NOT_IPV4, bytes);
		return XDP_PASS;
	}
	ihl = xdmvpn_parse_ipv4(&c, &ip);
	if (ihl < 0) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_NOT_IPV4, bytes);
		return XDP_PASS;
	}
	if (ip->protocol != IPPROTO_GRE || ip->daddr != XDMVPN_LOCAL_NBMA_BE) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_NOT_GRE, bytes);
		return XDP_PASS;
	}
	if (ip->frag_off & xdmvpn_htons(XDMVPN_IP_MF | XDMVPN_IP_OFFSET)) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_FRAGMENT, bytes);
		return XDP_PASS;
	}
	rc = xdmvpn_parse_gre(&c, &gi);
	if (rc == XDMVPN_GRE_TRUNCATED) {
		xdmvpn_count_drop(XDMVPN_DROP_GRE_TRUNCATED, bytes);
		return XDP_DROP;
	}
	if (rc != XDMVPN_GRE_OK) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_GRE_OTHER, bytes);
		return XDP_PASS;
	}
#if XDMVPN_HAS_KEY
	if (!(gi.flags & XDMVPN_GRE_F_KEY) || gi.key != (__u32)XDMVPN_GRE_KEY) {
#else
	if (gi.flags & XDMVPN_GRE_F_KEY) {
#endif
		xdmvpn_count_path(XDMVPN_PATH_PASS_WRONG_KEY, bytes);
		return XDP_PASS;
	}
	if (gi.proto == XDMVPN_GRE_PROTO_NHRP) {
		if (!xdmvpn_nhrp_allow(ip->saddr)) {
			xdmvpn_count_drop(XDMVPN_DROP_NHRP_RATE, bytes);
			return XDP_DROP;
		}
		xdmvpn_count_path(XDMVPN_PATH_NHRP, bytes);
		return XDP_PASS;
	}
	if (gi.proto != XDMVPN_GRE_PROTO_IPV4) {
		xdmvpn_count_drop(XDMVPN_DROP_INNER_PROTO, bytes);
		return XDP_DROP;
	}
	if (xdmvpn_parse_ipv4(&c, &inner) < 0) {
		xdmvpn_count_drop(XDMVPN_DROP_INNER_MALFORMED, bytes);
		return XDP_DROP;
	}

	peer = xdmvpn_route(inner->daddr);
	if (!peer || peer->nbma == XDMVPN_LOCAL_NBMA_BE)
		goto decap;
	if (peer->nbma == ip->saddr) {
		xdmvpn_count_drop(XDMVPN_DROP_LOOP, bytes);
		return XDP_DROP;
	}

	/* Hairpin.  Unusual packets (outer options, inner TTL about to expire)
	 * take the decap path so that the kernel forwards them or answers. */
	if (ihl != 20 || inner->ttl <= 1)
		goto slow;
	{
		struct bpf_fib_lookup fib;
		__be32 sender = ip->saddr, nbma = peer->nbma;
		__u32 check;
		__u64 now;

		rc = xdmvpn_fib(ctx, &fib, nbma, inner->tos, bytes - ETH_HLEN, 0);
		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
			goto slow; /* the kernel resolves the neighbour on its way out */
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
			xdmvpn_count_drop(XDMVPN_DROP_TOO_BIG, bytes);
			return XDP_DROP;
		}
		if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
			xdmvpn_count_drop(XDMVPN_DROP_NO_ROUTE, bytes);
			return XDP_DROP;
		}

		/* Inner TTL: one overlay hop (header sum unchanged, so an
		 * optional GRE checksum stays valid). */
		check = inner->check;
		check += xdmvpn_htons(0x0100);
		inner->check = (__u16)(check + (check >= 0xffff));
		inner->ttl--;

		xdmvpn_outer_ipv4(ip, inner->tos, xdmvpn_ntohs(inner->frag_off),
				  bytes - ETH_HLEN, ip->id, nbma);
		__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);

		now = bpf_ktime_get_coarse_ns();
		xdmvpn_count_peer(peer, bytes, now);
		xdmvpn_count_path(XDMVPN_PATH_HAIRPIN, bytes);
		if (XDMVPN_REDIRECT)
			xdmvpn_trigger(ctx, sender, inner->saddr, inner->daddr,
				       (void *)inner - data, data_end - (void *)inner, now);
		if (fib.ifindex == XDMVPN_UNDERLAY_IFINDEX)
			return XDP_TX;
		return bpf_redirect(fib.ifindex, 0);
	}
slow:
	xdmvpn_count_path(XDMVPN_PATH_HAIRPIN_SLOW, bytes);
decap:
	return xdmvpn_decap(ctx, ihl + gi.hlen, bytes);
}

int xdmvpn_xdp_underlay(struct xdp_md *ctx)
{
	return xdmvpn_underlay(ctx);
}

int xdmvpn_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

#ifdef XDMVPN_BENCH
/* Benchmark harness for live-frames test runs: every run first restores the
 * template packet (the previous run may have rewritten the page), then runs
 * the program and turns the verdict into XDP_DROP so that only the program
 * is measured.  xdmvpn_bench_base does the same restore and nothing else. */
struct xdmvpn_bench_tmpl {
	__u32 len;
	__u8 data[256];
};
BPF_ARRAY(xdmvpn_bench_pkt, struct xdmvpn_bench_tmpl, 1);
BPF_PERCPU_ARRAY(xdmvpn_bench_verdicts, __u64, 8);

static __always_inline int xdmvpn_bench_restore(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct xdmvpn_bench_tmpl *t = xdmvpn_bench_pkt.lookup(&zero);

	if (!t)
		return -1;
	return bpf_xdp_store_bytes(ctx, 0, t->data, XDMVPN_BENCH_LEN);
}

int xdmvpn_bench_xdp(struct xdp_md *ctx)
{
	__u32 v;
	__u64 *n;

	if (xdmvpn_bench_restore(ctx))
		return XDP_ABORTED;
	v = xdmvpn_underlay(ctx) & 7;
	n = xdmvpn_bench_verdicts.lookup(&v);
	if (n)
		(*n)++;
	return XDP_DROP;
}

int xdmvpn_bench_base(struct xdp_md *ctx)
{
	__u32 v = XDP_DROP;
	__u64 *n;

	if (xdmvpn_bench_restore(ctx))
		return XDP_ABORTED;
	n = xdmvpn_bench_verdicts.lookup(&v);
	if (n)
		(*n)++;
	return XDP_DROP;
}

/* Traffic generator (live frames: XDP_TX sends each frame out of the
 * ingress device) and counting sink for the pps comparison. */
BPF_PERCPU_ARRAY(xdmvpn_bench_sunk, __u64, 1);

int xdmvpn_bench_gen(struct xdp_md *ctx)
{
	return XDP_TX;
}

int xdmvpn_bench_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = xdmvpn_bench_sunk.lookup(&zero);

	if (n)
		(*n)++;
	return XDP_DROP;
}
#endif
