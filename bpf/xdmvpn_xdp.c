/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn XDP programs.
 *
 * xdmvpn_xdp_underlay (attached to the underlay interface) parses and
 * dispatches; the work is done by programs it tail-calls through
 * xdmvpn_xdp_progs, handing over in the per-CPU xdmvpn_scratch:
 *   GRE v0 with our key to our NBMA address:
 *     NHRP (0x2001)            -> xdmvpn_xdp_nhrp: admission (known senders:
 *                                 their token bucket; unknown ones: theirs and
 *                                 a global budget), XDP_PASS to the controller
 *     IPv4 for a mapped peer   -> xdmvpn_xdp_hairpin: rewrite the outer header
 *                                 from the next-hop cache, XDP_TX (+ trigger)
 *     IPv4 otherwise           -> xdmvpn_xdp_decap: strip the outer headers,
 *                                 redirect into dmvpn0-dp (arrives on dmvpn0)
 *   GRE from an IPsec peer     -> XDP_DROP (plaintext; with XDMVPN_IPSEC)
 *   anything else              -> XDP_PASS untouched (counted by reason)
 *   malformed GRE that is ours -> XDP_DROP (counted by reason)
 * Every XDP_DROP counts one reason of enum xdmvpn_drop.
 * xdmvpn_xdp_pass (on dmvpn0): lets veth deliver redirected frames.
 */
#include "xdmvpn_lib.h"

/* Final verdicts.  The benchmark build counts them and drops the frame so
 * that a live-frames run measures the programs, not the transmission. */
#ifdef XDMVPN_BENCH
static __always_inline int xdmvpn_verdict(int v)
{
	__u32 k = v & (XDMVPN_BENCH_VERDICTS - 1);
	__u64 *n = xdmvpn_bench_verdicts.lookup(&k);

	if (n)
		(*n)++;
	return XDP_DROP;
}
#else
#define xdmvpn_verdict(v) (v)
#endif

/* Drop and count reason (the frame's length as bytes). */
static __always_inline int xdmvpn_xdp_drop(__u32 reason, __u64 bytes)
{
	xdmvpn_count_drop(reason, bytes);
	return xdmvpn_verdict(XDP_DROP);
}

static __always_inline struct xdmvpn_scratch *xdmvpn_scratch_get(void)
{
	__u32 zero = 0;

	return xdmvpn_scratch.lookup(&zero);
}

/* Tail call slot of xdmvpn_xdp_progs; returns only when the slot is empty. */
static __always_inline int xdmvpn_xdp_tail(struct xdp_md *ctx, __u32 slot, __u64 bytes)
{
	xdmvpn_xdp_progs.call(ctx, slot);
	return xdmvpn_xdp_drop(XDMVPN_DROP_TAIL_CALL, bytes);
}

int xdmvpn_xdp_underlay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xdmvpn_cursor c = { .pos = data, .end = data_end };
	__u64 bytes = data_end - data;
	struct xdmvpn_scratch *s;
	struct xdmvpn_gre_info gi;
	struct iphdr *ip, *inner;
	struct xdmvpn_peer *peer;
	struct ethhdr *eth;
	int ihl, rc;

	if (xdmvpn_parse_eth(&c, &eth) != xdmvpn_htons(ETH_P_IP)) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_NOT_IPV4, bytes);
		return xdmvpn_verdict(XDP_PASS);
	}
	ihl = xdmvpn_parse_ipv4(&c, &ip);
	if (ihl < 0) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_NOT_IPV4, bytes);
		return xdmvpn_verdict(XDP_PASS);
	}
	if (ip->protocol != IPPROTO_GRE || ip->daddr != XDMVPN_LOCAL_NBMA_BE) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_NOT_GRE, bytes);
		return xdmvpn_verdict(XDP_PASS);
	}
	if (ip->frag_off & xdmvpn_htons(XDMVPN_IP_MF | XDMVPN_IP_OFFSET)) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_FRAGMENT, bytes);
		return xdmvpn_verdict(XDP_PASS);
	}
	rc = xdmvpn_parse_gre(&c, &gi);
	if (rc == XDMVPN_GRE_TRUNCATED)
		return xdmvpn_xdp_drop(XDMVPN_DROP_GRE_TRUNCATED, bytes);
	if (rc != XDMVPN_GRE_OK) {
		xdmvpn_count_path(XDMVPN_PATH_PASS_GRE_OTHER, bytes);
		return xdmvpn_verdict(XDP_PASS);
	}
#if XDMVPN_HAS_KEY
	if (!(gi.flags & XDMVPN_GRE_F_KEY) || gi.key != (__u32)XDMVPN_GRE_KEY) {
#else
	if (gi.flags & XDMVPN_GRE_F_KEY) {
#endif
		xdmvpn_count_path(XDMVPN_PATH_PASS_WRONG_KEY, bytes);
		return xdmvpn_verdict(XDP_PASS);
	}
	/* A peer that must use IPsec sends GRE (data and NHRP) only inside ESP,
	 * which the kernel decrypts after XDP: plaintext from it is refused
	 * before it can be decapsulated, forwarded or change the NHRP state. */
	if (xdmvpn_ipsec_flags(ip->saddr) & XDMVPN_IPSEC_REQUIRED)
		return xdmvpn_xdp_drop(XDMVPN_DROP_PLAINTEXT_IPSEC, bytes);
	if (gi.proto == XDMVPN_GRE_PROTO_NHRP)
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_NHRP, bytes);
	if (gi.proto != XDMVPN_GRE_PROTO_IPV4)
		return xdmvpn_xdp_drop(XDMVPN_DROP_INNER_PROTO, bytes);
	if (xdmvpn_parse_ipv4(&c, &inner) < 0)
		return xdmvpn_xdp_drop(XDMVPN_DROP_INNER_MALFORMED, bytes);
	s = xdmvpn_scratch_get();
	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, bytes);
	s->bytes = bytes;
	s->strip = ihl + gi.hlen;

	peer = xdmvpn_route(inner->daddr);
	if (!peer || peer->nbma == XDMVPN_LOCAL_NBMA_BE)
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
	if (peer->nbma == ip->saddr)
		return xdmvpn_xdp_drop(XDMVPN_DROP_LOOP, bytes);
	/* Hairpin.  Unusual packets (outer options, inner TTL about to expire)
	 * take the decap path so that the kernel forwards them or answers. */
	if (ihl != sizeof(struct iphdr) || inner->ttl <= 1) {
		xdmvpn_count_path(XDMVPN_PATH_HAIRPIN_SLOW, bytes);
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
	}
	/* XDP_TX would bypass xfrm: toward an IPsec peer the kernel forwards the
	 * inner packet back into the overlay, whose encap hands it to xfrm. */
	if (xdmvpn_ipsec_flags(peer->nbma) & XDMVPN_IPSEC_REQUIRED) {
		xdmvpn_count_path(XDMVPN_PATH_HAIRPIN_XFRM, bytes);
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
	}
	s->nbma = peer->nbma;
	s->stats_idx = peer->stats_idx;
	return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_HAIRPIN, bytes);
}

/* Redirect to ifindex, counting path; a refused redirect is a drop. */
static __always_inline int xdmvpn_xdp_redirect(__u32 ifindex, __u32 path, __u64 bytes)
{
	int v = bpf_redirect(ifindex, 0);

	if (v != XDP_REDIRECT)
		return xdmvpn_xdp_drop(XDMVPN_DROP_REDIRECT, bytes);
	xdmvpn_count_path(path, bytes);
	return xdmvpn_verdict(v);
}

/* Strip outer IPv4 + GRE (scratch.strip bytes after Ethernet), give the inner
 * packet a fresh Ethernet header addressed to dmvpn0, redirect it into the pair. */
int xdmvpn_xdp_decap(struct xdp_md *ctx)
{
	struct xdmvpn_scratch *s = xdmvpn_scratch_get();
	void *data, *data_end;
	struct ethhdr *eth;
	__u64 bytes;
	__u32 strip;

	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, ctx->data_end - ctx->data);
	bytes = s->bytes;
	strip = s->strip;
	if (strip > XDMVPN_MAX_STRIP)
		return xdmvpn_xdp_drop(XDMVPN_DROP_BOUNDS, bytes);
	if (bpf_xdp_adjust_head(ctx, strip))
		return xdmvpn_xdp_drop(XDMVPN_DROP_ADJUST_HEAD, bytes);
	/* adjust_head moved the data: derive the pointers again. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return xdmvpn_xdp_drop(XDMVPN_DROP_BOUNDS, bytes);
	xdmvpn_set_mac(eth->h_dest, XDMVPN_OVERLAY_MAC);
	xdmvpn_set_mac(eth->h_source, XDMVPN_OVERLAY_DP_MAC);
	eth->h_proto = xdmvpn_htons(ETH_P_IP);
	return xdmvpn_xdp_redirect(XDMVPN_OVERLAY_IFINDEX, XDMVPN_PATH_DECAP, bytes);
}

/* Traffic-indication trigger: sender NBMA, inner pair, start of the packet. */
static __always_inline void xdmvpn_trigger(struct xdp_md *ctx, __be32 sender,
					   __be32 src, __be32 dst, __u32 off,
					   __u32 avail, __u64 now)
{
	__u32 n = avail;
	struct xdmvpn_event *ev = xdmvpn_trigger_start(sender, src, dst, now, &n);

	if (!ev)
		return;
	if (bpf_xdp_load_bytes(ctx, off, ev->data, n))
		ev->len = 0;
	xdmvpn_events.ringbuf_submit(ev, 0);
	xdmvpn_count_path(XDMVPN_PATH_TRIGGER, 0);
}

/* Hairpin: outer IPv4 of 20 bytes (the dispatcher checked), GRE of
 * scratch.strip - 20 bytes, inner IPv4 for the peer in scratch. */
int xdmvpn_xdp_hairpin(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xdmvpn_scratch *s = xdmvpn_scratch_get();
	struct xdmvpn_nh *nh, *slot;
	struct iphdr *ip, *inner;
	struct ethhdr *eth = data;
	__be32 nbma, sender;
	__u32 off, check;
	__u64 bytes, now;

	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, data_end - data);
	bytes = s->bytes;
	nbma = s->nbma;
	off = ETH_HLEN + s->strip;
	if (off > ETH_HLEN + XDMVPN_HAIRPIN_MAX_STRIP)
		return xdmvpn_xdp_drop(XDMVPN_DROP_BOUNDS, bytes);
	ip = (void *)(eth + 1);
	inner = data + off;
	if ((void *)(ip + 1) > data_end || (void *)(inner + 1) > data_end)
		return xdmvpn_xdp_drop(XDMVPN_DROP_BOUNDS, bytes);

	now = xdmvpn_now();
	nh = xdmvpn_nh_get(s->stats_idx, nbma, now, &slot);
	if (!nh) {
		struct bpf_fib_lookup fib;
		int rc;

		if (!slot)
			return xdmvpn_xdp_drop(XDMVPN_DROP_NH_SLOT, bytes);
		rc = xdmvpn_nh_fill(ctx, &fib, slot, nbma, now, 0);
		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
			/* The kernel resolves the neighbour on its way out. */
			xdmvpn_count_path(XDMVPN_PATH_HAIRPIN_SLOW, bytes);
			return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
		}
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return xdmvpn_xdp_drop(XDMVPN_DROP_NO_ROUTE, bytes);
		nh = slot;
	}
	if (bytes - ETH_HLEN > nh->mtu)
		return xdmvpn_xdp_drop(XDMVPN_DROP_TOO_BIG, bytes);

	/* Inner TTL: one overlay hop (header sum unchanged, so an optional GRE
	 * checksum stays valid). */
	check = inner->check;
	check += xdmvpn_htons(XDMVPN_IPV4_TTL_WORD);
	inner->check = (__u16)(check + (check >= 0xffff));
	inner->ttl--;

	sender = ip->saddr;
	xdmvpn_outer_ipv4(ip, inner->tos, xdmvpn_ntohs(inner->frag_off),
			  bytes - ETH_HLEN, ip->id, nbma, inner->ttl);
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);

	{
		struct xdmvpn_peer p = { .stats_idx = s->stats_idx };

		xdmvpn_count_peer(&p, bytes, now);
	}
	if (XDMVPN_REDIRECT)
		xdmvpn_trigger(ctx, sender, inner->saddr, inner->daddr, off,
			       data_end - (void *)inner, now);
	if (nh->ifindex == XDMVPN_UNDERLAY_IFINDEX) {
		xdmvpn_count_path(XDMVPN_PATH_HAIRPIN, bytes);
		return xdmvpn_verdict(XDP_TX);
	}
	return xdmvpn_xdp_redirect(nh->ifindex, XDMVPN_PATH_HAIRPIN, bytes);
}

/* NHRP admission.  A hub's NBMA address is public, so NHRP is admitted in
 * two classes.  A known sender (an NBMA address that a host entry, prefix or
 * NHS slot points at: xdmvpn_known_peers, kept by the controller) faces only
 * its own token bucket (Cisco "ip nhrp max-send").  An unknown sender faces its
 * own bucket too, kept in a separate LRU so that a flood of new sources can
 * never evict a known peer's, and then the global budget of all unknown
 * senders together; a packet the budget refuses creates no state.  Buckets
 * are GCRA words (xdmvpn_gcra); a per-source one is created without a lock
 * (two CPUs creating the same one admit one extra packet). */
int xdmvpn_xdp_nhrp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__u64 bytes = data_end - data;
	struct xdmvpn_bucket *b, *g;
	__u32 zero = 0;
	__be32 src;
	__u64 now;

	if ((void *)(ip + 1) > data_end)
		return xdmvpn_xdp_drop(XDMVPN_DROP_BOUNDS, bytes);
	src = ip->saddr;
	now = xdmvpn_now();
	if (xdmvpn_known_peers.lookup(&src)) {
		b = xdmvpn_nhrp_buckets.lookup(&src);
		if (!b) {
			struct xdmvpn_bucket nb = { .tat_ns = now + XDMVPN_NHRP_COST_NS };

			xdmvpn_nhrp_buckets.update(&src, &nb);
		} else if (!xdmvpn_gcra(&b->tat_ns, now, XDMVPN_NHRP_COST_NS,
					XDMVPN_NHRP_BURST)) {
			return xdmvpn_xdp_drop(XDMVPN_DROP_NHRP_RATE, bytes);
		}
	} else {
		b = xdmvpn_nhrp_unknown_buckets.lookup(&src);
		if (b && !xdmvpn_gcra(&b->tat_ns, now, XDMVPN_NHRP_COST_NS, XDMVPN_NHRP_BURST))
			return xdmvpn_xdp_drop(XDMVPN_DROP_NHRP_UNKNOWN_RATE, bytes);
		g = xdmvpn_nhrp_budget.lookup(&zero);
		if (!g || !xdmvpn_gcra(&g->tat_ns, now, XDMVPN_NHRP_UNKNOWN_COST_NS,
				       XDMVPN_NHRP_UNKNOWN_BURST))
			return xdmvpn_xdp_drop(XDMVPN_DROP_NHRP_UNKNOWN_BUDGET, bytes);
		if (!b) {
			struct xdmvpn_bucket nb = { .tat_ns = now + XDMVPN_NHRP_COST_NS };

			xdmvpn_nhrp_unknown_buckets.update(&src, &nb);
		}
		xdmvpn_count_path(XDMVPN_PATH_NHRP_UNKNOWN, bytes);
	}
	xdmvpn_count_path(XDMVPN_PATH_NHRP, bytes);
	return xdmvpn_verdict(XDP_PASS);
}

int xdmvpn_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

#ifdef XDMVPN_BENCH
/* Benchmark harness for live-frames test runs: every run first restores the
 * template packet (the previous run may have rewritten the page), then
 * tail-calls the underlay program, whose verdicts the bench build turns into
 * XDP_DROP.  xdmvpn_bench_base does the same restore and verdict count only. */
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
	if (xdmvpn_bench_restore(ctx))
		return XDP_ABORTED;
	xdmvpn_xdp_progs.call(ctx, XDMVPN_XDP_ENTRY);
	return XDP_ABORTED;
}

int xdmvpn_bench_base(struct xdp_md *ctx)
{
	if (xdmvpn_bench_restore(ctx))
		return XDP_ABORTED;
	return xdmvpn_verdict(XDP_DROP);
}
#endif

#ifdef XDMVPN_BENCH
/* Traffic generator for the forwarding comparison (live frames: XDP_TX sends
 * each frame out of the generator's interface), paced: at most one frame per
 * pace.interval_ns (0: every repetition), the others are dropped; each frame
 * sent is first restored from the template.  And a counting sink. */
int xdmvpn_bench_gen(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct xdmvpn_bench_pace *p = xdmvpn_bench_pacer.lookup(&zero);
	__u64 now;

	if (!p)
		return XDP_ABORTED;
	if (p->interval_ns) {
		now = bpf_ktime_get_ns();
		if (now < p->next_ns)
			return XDP_DROP;
		p->next_ns = (p->next_ns + p->interval_ns > now) ? p->next_ns + p->interval_ns
								 : now + p->interval_ns;
	}
	/* Frames are recycled with whatever the far end wrote into them. */
	if (xdmvpn_bench_restore(ctx))
		return XDP_ABORTED;
	p->sent++;
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
