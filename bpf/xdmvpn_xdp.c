/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn XDP programs.
 *
 * xdmvpn_xdp_underlay (attached to the underlay interface) parses the outer
 * IPv4 header (an outer IPv6 one: xdmvpn_xdp_underlay6, with its extension
 * headers) and GRE; the work is done by programs tail-called through
 * xdmvpn_xdp_progs, handing over in the per-CPU xdmvpn_scratch:
 *   GRE v0 with our key to our NBMA address:
 *     NHRP (0x2001)            -> xdmvpn_xdp_nhrp: admission (known senders:
 *                                 their token bucket; unknown ones: theirs and
 *                                 a global budget), XDP_PASS to the controller
 *     IPv4 (0x0800)            -> xdmvpn_xdp_inner4 } where the inner packet goes:
 *     IPv6 (0x86DD)            -> xdmvpn_xdp_inner6 }
 *       for a mapped peer      -> xdmvpn_xdp_hairpin (IPv4 NBMA) or _hairpin6:
 *                                 new outer header from the next-hop cache,
 *                                 XDP_TX (+ trigger)
 *       otherwise              -> xdmvpn_xdp_decap: strip the outer headers,
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

/* Pass untouched, counting path. */
static __always_inline int xdmvpn_xdp_pass_as(__u32 path, __u64 bytes)
{
	xdmvpn_count_path(path, bytes);
	return xdmvpn_verdict(XDP_PASS);
}

/* GRE after an outer header to our address: -1 when it is ours (gi filled),
 * else the verdict (passed or dropped, counted). */
static __always_inline int xdmvpn_xdp_gre(struct xdmvpn_cursor *c, struct xdmvpn_gre_info *gi,
					  __u64 bytes)
{
	int rc = xdmvpn_parse_gre(c, gi);

	if (rc == XDMVPN_GRE_TRUNCATED)
		return xdmvpn_xdp_drop(XDMVPN_DROP_GRE_TRUNCATED, bytes);
	if (rc != XDMVPN_GRE_OK)
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_GRE_OTHER, bytes);
#if XDMVPN_HAS_KEY
	if (!(gi->flags & XDMVPN_GRE_F_KEY) || gi->key != (__u32)XDMVPN_GRE_KEY)
#else
	if (gi->flags & XDMVPN_GRE_F_KEY)
#endif
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_WRONG_KEY, bytes);
	return -1;
}

/* Our GRE, its hand-over written: on by protocol type. */
static __always_inline int xdmvpn_xdp_dispatch(struct xdp_md *ctx, __u16 proto, __u64 bytes)
{
	if (proto == XDMVPN_GRE_PROTO_NHRP)
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_NHRP, bytes);
	if (proto == XDMVPN_GRE_PROTO_IPV4)
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_INNER4, bytes);
	if (proto == XDMVPN_GRE_PROTO_IPV6)
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_INNER6, bytes);
	return xdmvpn_xdp_drop(XDMVPN_DROP_INNER_PROTO, bytes);
}

int xdmvpn_xdp_underlay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xdmvpn_cursor c = { .pos = data, .end = data_end };
	__u64 bytes = data_end - data;
	struct xdmvpn_scratch *s;
	struct xdmvpn_gre_info gi;
	struct ethhdr *eth;
	struct iphdr *ip;
	int ihl, proto, rc;

	proto = xdmvpn_parse_eth(&c, &eth);
	if (XDMVPN_HAS_NBMA6 && proto == xdmvpn_htons(ETH_P_IPV6))
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_UNDERLAY6, bytes);
	if (proto != xdmvpn_htons(ETH_P_IP))
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_NOT_IPV4, bytes);
	ihl = xdmvpn_parse_ipv4(&c, &ip);
	if (ihl < 0)
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_NOT_IPV4, bytes);
	if (ip->protocol != XDMVPN_IPPROTO_GRE || ip->daddr != XDMVPN_LOCAL_NBMA_BE)
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_NOT_GRE, bytes);
	if (ip->frag_off & xdmvpn_htons(XDMVPN_IP_MF | XDMVPN_IP_OFFSET))
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_FRAGMENT, bytes);
	rc = xdmvpn_xdp_gre(&c, &gi, bytes);
	if (rc >= 0)
		return rc;
	/* A peer that must use IPsec sends GRE (data and NHRP) only inside ESP,
	 * which the kernel decrypts after XDP: plaintext from it is refused
	 * before it can be decapsulated, forwarded or change the NHRP state. */
	if (xdmvpn_ipsec_flags(ip->saddr) & XDMVPN_IPSEC_REQUIRED)
		return xdmvpn_xdp_drop(XDMVPN_DROP_PLAINTEXT_IPSEC, bytes);
	s = xdmvpn_scratch_get();
	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, bytes);
	s->bytes = bytes;
	s->strip = ihl + gi.hlen;
	s->flags = 0;
	xdmvpn_in6_set4(&s->sender, ip->saddr);
	return xdmvpn_xdp_dispatch(ctx, gi.proto, bytes);
}

static __always_inline int xdmvpn_ext6(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS;
}

/* Outer IPv6.  The extension headers a packet to us may carry before GRE
 * (hop-by-hop, destination options, a routing header with no segments left)
 * are walked, at most XDMVPN_IPV6_EXT_MAX of them and XDMVPN_IPV6_EXT_BYTES
 * together; anything else is the kernel's (counted). */
int xdmvpn_xdp_underlay6(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xdmvpn_cursor c = { .pos = data + ETH_HLEN, .end = data_end };
	__u64 bytes = data_end - data;
	struct xdmvpn_scratch *s;
	struct xdmvpn_gre_info gi;
	struct ipv6hdr *ip6;
	__u32 ext = 0, plen;
	__u8 nh;
	int rc;

	if (xdmvpn_parse_ipv6(&c, &ip6) < 0)
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_NOT_IPV4, bytes);
	if (!xdmvpn_is_local6((struct xdmvpn_in6 *)&ip6->daddr))
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_NOT_GRE, bytes);
	plen = xdmvpn_ntohs(ip6->payload_len);
	if (!plen || plen > (__u32)(data_end - c.pos))
		return xdmvpn_xdp_drop(XDMVPN_DROP_OUTER_MALFORMED, bytes);
	nh = ip6->nexthdr;
#pragma unroll
	for (int i = 0; i < XDMVPN_IPV6_EXT_MAX; i++) {
		__u8 *e = c.pos;
		__u32 len;

		if (!xdmvpn_ext6(nh))
			break;
		if ((void *)(e + XDMVPN_IPV6_EXT_UNIT) > data_end)
			return xdmvpn_xdp_drop(XDMVPN_DROP_OUTER_MALFORMED, bytes);
		if (nh == IPPROTO_ROUTING && e[3])   /* segments left: not (yet) for us */
			return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_IPV6_EXT, bytes);
		len = (e[1] + 1) * XDMVPN_IPV6_EXT_UNIT;
		ext += len;
		if (ext > XDMVPN_IPV6_EXT_BYTES)
			return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_IPV6_EXT, bytes);
		nh = e[0];
		c.pos = data + ETH_HLEN + XDMVPN_IPV6_HLEN + ext;
	}
	if (xdmvpn_ext6(nh))
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_IPV6_EXT, bytes);
	if (nh == IPPROTO_FRAGMENT)
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_FRAGMENT, bytes);
	if (nh != XDMVPN_IPPROTO_GRE)
		return xdmvpn_xdp_pass_as(XDMVPN_PATH_PASS_NOT_GRE, bytes);
	rc = xdmvpn_xdp_gre(&c, &gi, bytes);
	if (rc >= 0)
		return rc;
	s = xdmvpn_scratch_get();
	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, bytes);
	s->bytes = bytes;
	s->strip = XDMVPN_IPV6_HLEN + ext + gi.hlen;
	s->flags = XDMVPN_F_OUTER6;
	__builtin_memcpy(&s->sender, &ip6->saddr, sizeof(s->sender));
	return xdmvpn_xdp_dispatch(ctx, gi.proto, bytes);
}

/* Where the inner packet goes, once its mapping (or none) is known: to us
 * (decap), back to its sender (a loop), to the kernel when unusual (slow:
 * TTL about to expire, scoped addresses; or toward an IPsec peer), else out
 * again (hairpin toward the mapping's NBMA address). */
static __always_inline int xdmvpn_xdp_decide(struct xdp_md *ctx, struct xdmvpn_scratch *s,
					     struct xdmvpn_peer *peer, int slow, __u64 bytes)
{
	struct xdmvpn_in6 *n6;

	if (!peer)
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
	if (peer->flags & XDMVPN_PEER_NBMA6) {
		n6 = xdmvpn_nbma6_of(peer->stats_idx);
		if (!n6)
			return xdmvpn_xdp_drop(XDMVPN_DROP_NH_SLOT, bytes);
		if (xdmvpn_is_local6(n6))
			return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
		if ((s->flags & XDMVPN_F_OUTER6) && xdmvpn_eq6(n6, &s->sender))
			return xdmvpn_xdp_drop(XDMVPN_DROP_LOOP, bytes);
	} else {
		if (peer->nbma == XDMVPN_LOCAL_NBMA_BE)
			return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
		if (!(s->flags & XDMVPN_F_OUTER6) && peer->nbma == s->sender.w[0])
			return xdmvpn_xdp_drop(XDMVPN_DROP_LOOP, bytes);
	}
	if (slow) {
		xdmvpn_count_path(XDMVPN_PATH_HAIRPIN_SLOW, bytes);
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
	}
	/* XDP_TX would bypass xfrm: toward an IPsec peer the kernel forwards the
	 * inner packet back into the overlay, whose encap hands it to xfrm. */
	if (!(peer->flags & XDMVPN_PEER_NBMA6) &&
	    (xdmvpn_ipsec_flags(peer->nbma) & XDMVPN_IPSEC_REQUIRED)) {
		xdmvpn_count_path(XDMVPN_PATH_HAIRPIN_XFRM, bytes);
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
	}
	s->nbma = peer->nbma;
	s->stats_idx = peer->stats_idx;
	if (peer->flags & XDMVPN_PEER_NBMA6) {
		s->flags |= XDMVPN_F_PEER6;
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_HAIRPIN6, bytes);
	}
	return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_HAIRPIN, bytes);
}

/* The inner packet after scratch.strip bytes, with hlen readable bytes, or NULL. */
#define xdmvpn_xdp_inner(ctx_, s_, hlen_)                                      \
	({                                                                    \
		void *d_ = (void *)(long)(ctx_)->data;                        \
		void *p_ = 0;                                                 \
		__u32 st_ = (s_)->strip;                                      \
		if (st_ <= XDMVPN_MAX_STRIP) {                                \
			p_ = d_ + ETH_HLEN + st_;                             \
			if (p_ + (hlen_) > (void *)(long)(ctx_)->data_end)    \
				p_ = 0;                                       \
		}                                                             \
		p_;                                                           \
	})

int xdmvpn_xdp_inner4(struct xdp_md *ctx)
{
	struct xdmvpn_scratch *s = xdmvpn_scratch_get();
	struct iphdr *ip;

	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, ctx->data_end - ctx->data);
	ip = xdmvpn_xdp_inner(ctx, s, sizeof(*ip));
	if (!ip || ip->version != XDMVPN_IPV4_VERSION || ip->ihl < XDMVPN_IPV4_MIN_IHL)
		return xdmvpn_xdp_drop(XDMVPN_DROP_INNER_MALFORMED, s->bytes);
	xdmvpn_in6_set4(&s->src, ip->saddr);
	xdmvpn_in6_set4(&s->dst, ip->daddr);
	s->tos = ip->tos;
	s->ttl = ip->ttl;
	s->frag = xdmvpn_ntohs(ip->frag_off);
	return xdmvpn_xdp_decide(ctx, s, xdmvpn_route(ip->daddr), ip->ttl <= 1, s->bytes);
}

int xdmvpn_xdp_inner6(struct xdp_md *ctx)
{
	struct xdmvpn_scratch *s = xdmvpn_scratch_get();
	struct ipv6hdr *ip6;
	int slow;

	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, ctx->data_end - ctx->data);
	ip6 = xdmvpn_xdp_inner(ctx, s, sizeof(*ip6));
	if (!ip6 || ip6->version != XDMVPN_IPV6_VERSION)
		return xdmvpn_xdp_drop(XDMVPN_DROP_INNER_MALFORMED, s->bytes);
	s->flags = (s->flags & XDMVPN_F_OUTER6) | XDMVPN_F_INNER6;
	__builtin_memcpy(&s->src, &ip6->saddr, sizeof(s->src));
	__builtin_memcpy(&s->dst, &ip6->daddr, sizeof(s->dst));
	s->tos = (xdmvpn_ntohs(*(__be16 *)ip6) >> 4) & 0xff;
	s->ttl = ip6->hop_limit;
	s->frag = XDMVPN_IP_DF;
	/* Link-local and multicast addresses never cross a router (RFC 4291): the
	 * kernel answers or refuses them, as for any packet it would forward. */
	slow = ip6->hop_limit <= 1 || xdmvpn_scoped6((struct xdmvpn_in6 *)&ip6->saddr) ||
	       xdmvpn_scoped6((struct xdmvpn_in6 *)&ip6->daddr);
	return xdmvpn_xdp_decide(ctx, s, xdmvpn_route6((struct xdmvpn_in6 *)&ip6->daddr), slow,
				 s->bytes);
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

/* Strip the outer headers (scratch.strip bytes after Ethernet), give the inner
 * packet a fresh Ethernet header addressed to dmvpn0, redirect it into the pair. */
int xdmvpn_xdp_decap(struct xdp_md *ctx)
{
	struct xdmvpn_scratch *s = xdmvpn_scratch_get();
	void *data, *data_end;
	struct ethhdr *eth;
	__u64 bytes;
	__u32 strip, flags;

	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, ctx->data_end - ctx->data);
	bytes = s->bytes;
	strip = s->strip;
	flags = s->flags;
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
	eth->h_proto = xdmvpn_htons((flags & XDMVPN_F_INNER6) ? ETH_P_IPV6 : ETH_P_IP);
	return xdmvpn_xdp_redirect(XDMVPN_OVERLAY_IFINDEX, XDMVPN_PATH_DECAP, bytes);
}

/* The traffic-indication trigger of a hairpinned packet that the rate limit let
 * through (xdmvpn_hairpin): sender NBMA, inner pair, the start of the inner
 * packet as it came; then back to the hairpin program. */
int xdmvpn_xdp_trigger(struct xdp_md *ctx)
{
	struct xdmvpn_scratch *s = xdmvpn_scratch_get();
	struct xdmvpn_event *ev;
	__u32 n, flags;
	__u64 bytes;

	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, ctx->data_end - ctx->data);
	bytes = s->bytes;
	flags = s->flags;
	n = bytes - ETH_HLEN - s->strip;
	ev = xdmvpn_event_start(XDMVPN_EV_TRIGGER, flags & (XDMVPN_F_OUTER6 | XDMVPN_F_INNER6),
				&n);
	if (ev) {
		__builtin_memcpy(&ev->nbma_src, &s->sender, sizeof(ev->nbma_src));
		__builtin_memcpy(&ev->inner_src, &s->src, sizeof(ev->inner_src));
		__builtin_memcpy(&ev->inner_dst, &s->dst, sizeof(ev->inner_dst));
		if (bpf_xdp_load_bytes(ctx, ETH_HLEN + (s->strip & 0xffff), ev->data, n))
			ev->len = 0;
		xdmvpn_events.ringbuf_submit(ev, 0);
		xdmvpn_count_path(XDMVPN_PATH_TRIGGER, 0);
	}
	s->flags = flags | XDMVPN_F_TRIGGERED;
	return xdmvpn_xdp_tail(ctx, (flags & XDMVPN_F_PEER6) ? XDMVPN_XDP_HAIRPIN6
							      : XDMVPN_XDP_HAIRPIN, bytes);
}

/* Hairpin toward the mapping in scratch (to6: its NBMA address is IPv6): the
 * inner packet (scratch.strip bytes after Ethernet) loses one hop, gets our
 * outer header toward the peer in place of what it came with (the frame grows
 * or shrinks by the difference) and goes out again. */
static __always_inline int xdmvpn_hairpin(struct xdp_md *ctx, const int to6)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xdmvpn_scratch *s = xdmvpn_scratch_get();
	const __u32 outer_len = (to6 ? XDMVPN_IPV6_HLEN : XDMVPN_IPV4_MIN_HLEN) + XDMVPN_GRE_HLEN;
	struct xdmvpn_in6 *n6 = 0;
	struct xdmvpn_nh *nh, *slot;
	__u32 strip, off, idx, inner6;
	__u64 bytes, now, out;
	struct ethhdr *eth;
	__be32 nbma;
	__u16 frag;
	__u8 tos, ttl;

	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, data_end - data);
	bytes = s->bytes;
	nbma = s->nbma;
	idx = s->stats_idx;
	strip = s->strip;
	inner6 = s->flags & XDMVPN_F_INNER6;
	if (strip > XDMVPN_MAX_STRIP)
		return xdmvpn_xdp_drop(XDMVPN_DROP_BOUNDS, bytes);
	if (to6) {
		n6 = xdmvpn_nbma6_of(idx);
		if (!n6)
			return xdmvpn_xdp_drop(XDMVPN_DROP_NH_SLOT, bytes);
	}
	now = xdmvpn_now();
	nh = xdmvpn_nh_get(idx, nbma, now, &slot);
	if (!nh) {
		if (!slot)
			return xdmvpn_xdp_drop(XDMVPN_DROP_NH_SLOT, bytes);
		/* filled once for this packet already: the clock is behind the fill */
		if (!(s->flags & XDMVPN_F_FILLED))
			return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_NHFILL, bytes);
		nh = slot;
	}
	out = bytes - strip + outer_len;
	if (out - ETH_HLEN > nh->mtu)
		return xdmvpn_xdp_drop(XDMVPN_DROP_TOO_BIG, bytes);
	/* The trigger (rate-limited per inner pair) in its own program, once. */
	if (XDMVPN_REDIRECT && !(s->flags & XDMVPN_F_TRIGGERED)) {
		if (xdmvpn_rl_allow(xdmvpn_fold6(&s->src), xdmvpn_fold6(&s->dst), now,
				    XDMVPN_TRIGGER_INTERVAL_NS))
			return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_TRIGGER, bytes);
		xdmvpn_count_path(XDMVPN_PATH_TRIGGER_HELD, 0);
	}

	/* One overlay hop (an IPv4 header's sum is unchanged, so an optional GRE
	 * checksum of the sender would have stayed valid). */
	off = ETH_HLEN + strip;
	tos = s->tos;
	ttl = s->ttl - 1;
	frag = s->frag;
	if (inner6) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return xdmvpn_xdp_drop(XDMVPN_DROP_BOUNDS, bytes);
		ip6->hop_limit = ttl;
	} else {
		struct iphdr *ip = data + off;
		__u32 check;

		if ((void *)(ip + 1) > data_end)
			return xdmvpn_xdp_drop(XDMVPN_DROP_BOUNDS, bytes);
		check = ip->check;
		check += xdmvpn_htons(XDMVPN_IPV4_TTL_WORD);
		ip->check = (__u16)(check + (check >= 0xffff));
		ip->ttl = ttl;
	}
	{
		struct xdmvpn_peer p = { .stats_idx = idx };

		xdmvpn_count_peer(&p, bytes, now);
	}

	if (strip != outer_len && bpf_xdp_adjust_head(ctx, (int)strip - (int)outer_len))
		return xdmvpn_xdp_drop(XDMVPN_DROP_ADJUST_HEAD, bytes);
	/* adjust_head moved the data: derive the pointers again. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if (data + ETH_HLEN + outer_len > data_end)
		return xdmvpn_xdp_drop(XDMVPN_DROP_BOUNDS, bytes);
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	if (to6) {
		eth->h_proto = xdmvpn_htons(ETH_P_IPV6);
		xdmvpn_outer_ipv6(data + ETH_HLEN, tos, out - ETH_HLEN - XDMVPN_IPV6_HLEN, n6, ttl);
	} else {
		__be16 id = 0;

		eth->h_proto = xdmvpn_htons(ETH_P_IP);
		if (!(XDMVPN_DF == XDMVPN_DF_SET ||
		      (XDMVPN_DF == XDMVPN_DF_INHERIT && (frag & XDMVPN_IP_DF))))
			id = (__be16)bpf_get_prandom_u32();
		xdmvpn_outer_ipv4(data + ETH_HLEN, tos, frag, out - ETH_HLEN, id, nbma, ttl);
	}
	xdmvpn_gre_header(data + ETH_HLEN + outer_len - XDMVPN_GRE_HLEN,
			  inner6 ? XDMVPN_GRE_PROTO_IPV6 : XDMVPN_GRE_PROTO_IPV4);
	if (nh->ifindex == XDMVPN_UNDERLAY_IFINDEX) {
		xdmvpn_count_path(XDMVPN_PATH_HAIRPIN, bytes);
		return xdmvpn_verdict(XDP_TX);
	}
	return xdmvpn_xdp_redirect(nh->ifindex, XDMVPN_PATH_HAIRPIN, bytes);
}

int xdmvpn_xdp_hairpin(struct xdp_md *ctx)
{
	return xdmvpn_hairpin(ctx, 0);
}

int xdmvpn_xdp_hairpin6(struct xdp_md *ctx)
{
	return xdmvpn_hairpin(ctx, 1);
}

/* The hairpin's next hop was not cached (or is stale): fill the mapping's
 * entry from the fib, then back to the hairpin program of its family. */
int xdmvpn_xdp_nhfill(struct xdp_md *ctx)
{
	struct xdmvpn_scratch *s = xdmvpn_scratch_get();
	struct xdmvpn_in6 *n6 = 0;
	struct bpf_fib_lookup fib;
	struct xdmvpn_nh *slot;
	__u32 idx, to6;
	__u64 bytes;
	int rc;

	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, ctx->data_end - ctx->data);
	bytes = s->bytes;
	idx = s->stats_idx;
	to6 = s->flags & XDMVPN_F_PEER6;
	slot = xdmvpn_nh_cache.lookup(&idx);
	if (to6)
		n6 = xdmvpn_nbma6_of(idx);
	if (!slot || (to6 && !n6))
		return xdmvpn_xdp_drop(XDMVPN_DROP_NH_SLOT, bytes);
	rc = xdmvpn_nh_fill(ctx, &fib, slot, s->nbma, n6, xdmvpn_now());
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		/* The kernel resolves the neighbour on its way out. */
		xdmvpn_count_path(XDMVPN_PATH_HAIRPIN_SLOW, bytes);
		return xdmvpn_xdp_tail(ctx, XDMVPN_XDP_DECAP, bytes);
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return xdmvpn_xdp_drop(XDMVPN_DROP_NO_ROUTE, bytes);
	s->flags |= XDMVPN_F_FILLED;
	return xdmvpn_xdp_tail(ctx, to6 ? XDMVPN_XDP_HAIRPIN6 : XDMVPN_XDP_HAIRPIN, bytes);
}

/* Admission of one sender (see xdmvpn_xdp_nhrp) in the maps of its family
 * (six: IPv6, keyed by k6 if known, else by its /64 u6; IPv4: k4).  -1 to
 * admit, else the drop verdict. */
static __always_inline int xdmvpn_nhrp_admit(const int six, __be32 *k4, struct xdmvpn_in6 *k6,
					     struct xdmvpn_in6 *u6, __u64 now, __u64 bytes)
{
	struct xdmvpn_bucket nb = { .tat_ns = now + XDMVPN_NHRP_COST_NS };
	struct xdmvpn_bucket *b, *g;
	__u32 zero = 0;
	int known;

	known = six ? !!xdmvpn_known_peers6.lookup(k6) : !!xdmvpn_known_peers.lookup(k4);
	if (known) {
		b = six ? xdmvpn_nhrp_buckets6.lookup(k6) : xdmvpn_nhrp_buckets.lookup(k4);
		if (!b) {
			if (six)
				xdmvpn_nhrp_buckets6.update(k6, &nb);
			else
				xdmvpn_nhrp_buckets.update(k4, &nb);
		} else if (!xdmvpn_gcra(&b->tat_ns, now, XDMVPN_NHRP_COST_NS, XDMVPN_NHRP_BURST)) {
			return xdmvpn_xdp_drop(XDMVPN_DROP_NHRP_RATE, bytes);
		}
		return -1;
	}
	b = six ? xdmvpn_nhrp_unknown_buckets6.lookup(u6) : xdmvpn_nhrp_unknown_buckets.lookup(k4);
	if (b && !xdmvpn_gcra(&b->tat_ns, now, XDMVPN_NHRP_COST_NS, XDMVPN_NHRP_BURST))
		return xdmvpn_xdp_drop(XDMVPN_DROP_NHRP_UNKNOWN_RATE, bytes);
	g = xdmvpn_nhrp_budget.lookup(&zero);
	if (!g || !xdmvpn_gcra(&g->tat_ns, now, XDMVPN_NHRP_UNKNOWN_COST_NS,
			       XDMVPN_NHRP_UNKNOWN_BURST))
		return xdmvpn_xdp_drop(XDMVPN_DROP_NHRP_UNKNOWN_BUDGET, bytes);
	if (!b) {
		if (six)
			xdmvpn_nhrp_unknown_buckets6.update(u6, &nb);
		else
			xdmvpn_nhrp_unknown_buckets.update(k4, &nb);
	}
	xdmvpn_count_path(XDMVPN_PATH_NHRP_UNKNOWN, bytes);
	return -1;
}

/* NHRP admission.  A hub's NBMA address is public, so NHRP is admitted in
 * two classes.  A known sender (an NBMA address that a host entry, prefix or
 * NHS slot points at: xdmvpn_known_peers(6), kept by the controller) faces only
 * its own token bucket (Cisco "ip nhrp max-send").  An unknown sender faces its
 * own bucket too (an IPv6 one: its /64's), kept in a separate LRU so that a
 * flood of new sources can never evict a known peer's, and then the global
 * budget of all unknown senders together (both families); a packet the budget
 * refuses creates no state.  Buckets are GCRA words (xdmvpn_gcra); a
 * per-source one is created without a lock (two CPUs creating the same one
 * admit one extra packet).  The sender is the scratch's (the outer source). */
int xdmvpn_xdp_nhrp(struct xdp_md *ctx)
{
	struct xdmvpn_scratch *s = xdmvpn_scratch_get();
	__u64 bytes, now;
	int v;

	if (!s)
		return xdmvpn_xdp_drop(XDMVPN_DROP_SCRATCH, ctx->data_end - ctx->data);
	bytes = s->bytes;
	now = xdmvpn_now();
	if (s->flags & XDMVPN_F_OUTER6) {
		struct xdmvpn_in6 src = s->sender, net = s->sender;

		net.w[2] = 0;
		net.w[3] = 0;
		v = xdmvpn_nhrp_admit(1, 0, &src, &net, now, bytes);
	} else {
		__be32 src = s->sender.w[0];

		v = xdmvpn_nhrp_admit(0, &src, 0, 0, now, bytes);
	}
	if (v >= 0)
		return v;
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

	__u32 n;

	if (!t)
		return -1;
	n = t->len;
	if (n < ETH_HLEN || n > XDMVPN_BENCH_TEMPLATE)
		return -1;
	n = ((n - 1) & (XDMVPN_BENCH_TEMPLATE - 1)) + 1;   /* 1..256 where the verifier sees it */
	return bpf_xdp_store_bytes(ctx, 0, t->data, n);
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
