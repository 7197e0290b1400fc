/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn helpers shared by the XDP and tc programs: counters, checksums,
 * the forwarding lookup, the event rate limit, outer header construction. */
#ifndef XDMVPN_LIB_H
#define XDMVPN_LIB_H

#include "xdmvpn_parse.h"
#include "xdmvpn_maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* The programs' clock: the coarse monotonic one (a tick is a few ms, reading
 * it costs a few ns); a test build reads xdmvpn_test_clock instead. */
#if XDMVPN_TEST_CLOCK
static __always_inline __u64 xdmvpn_now(void)
{
	__u32 zero = 0;
	__u64 *t = xdmvpn_test_clock.lookup(&zero);

	return t ? *t : 0;
}
#else
#define xdmvpn_now() bpf_ktime_get_coarse_ns()
#endif

static __always_inline void xdmvpn_count_path(__u32 path, __u64 bytes)
{
	struct xdmvpn_count *c = xdmvpn_paths.lookup(&path);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline void xdmvpn_count_drop(__u32 reason, __u64 bytes)
{
	struct xdmvpn_count *c = xdmvpn_drops.lookup(&reason);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline void xdmvpn_count_peer(const struct xdmvpn_peer *p,
					      __u64 bytes, __u64 now)
{
	__u32 idx = p->stats_idx;
	struct xdmvpn_peer_stats *s = xdmvpn_peer_stats.lookup(&idx);

	if (s) {
		s->packets++;
		s->bytes += bytes;
		s->last_used_ns = now;
	}
}

/* Forwarding decision for an inner destination: host entry first, then the
 * longest shortcut prefix.  NULL when neither matches. */
static __always_inline struct xdmvpn_peer *xdmvpn_route(__be32 dst)
{
	struct xdmvpn_peer *p = xdmvpn_peers.lookup(&dst);
	struct xdmvpn_lpm_key k;

	if (p)
		return p;
	k.prefixlen = sizeof(dst) * 8;
	k.addr = dst;
	return xdmvpn_prefixes.lookup(&k);
}

/* ---- IPv6 addresses ------------------------------------------------------- */
/* Our IPv6 NBMA address? (never, without one) */
static __always_inline int xdmvpn_is_local6(const struct xdmvpn_in6 *a)
{
	return XDMVPN_HAS_NBMA6 && a->w[0] == XDMVPN_LOCAL_NBMA6_W0 &&
	       a->w[1] == XDMVPN_LOCAL_NBMA6_W1 && a->w[2] == XDMVPN_LOCAL_NBMA6_W2 &&
	       a->w[3] == XDMVPN_LOCAL_NBMA6_W3;
}

static __always_inline void xdmvpn_local6_words(__be32 *w)
{
	w[0] = XDMVPN_LOCAL_NBMA6_W0;
	w[1] = XDMVPN_LOCAL_NBMA6_W1;
	w[2] = XDMVPN_LOCAL_NBMA6_W2;
	w[3] = XDMVPN_LOCAL_NBMA6_W3;
}

/* The 32-bit stand-in of an IPv6 address in xdmvpn_peer.nbma, the next-hop cache
 * and the rate limit. */
static __always_inline __be32 xdmvpn_fold6(const struct xdmvpn_in6 *a)
{
	return a->w[0] ^ a->w[1] ^ a->w[2] ^ a->w[3];
}

static __always_inline int xdmvpn_eq6(const struct xdmvpn_in6 *a, const struct xdmvpn_in6 *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] &&
	       a->w[3] == b->w[3];
}

/* An IPv4 address in an xdmvpn_in6 field (w[0], the rest 0). */
static __always_inline void xdmvpn_in6_set4(struct xdmvpn_in6 *a, __be32 v)
{
	a->w[0] = v;
	a->w[1] = 0;
	a->w[2] = 0;
	a->w[3] = 0;
}

/* Forwarding decision for an IPv6 inner destination (16 readable bytes, packet
 * or stack): host entry, then the longest shortcut prefix. */
static __always_inline struct xdmvpn_peer *xdmvpn_route6(struct xdmvpn_in6 *dst)
{
	struct xdmvpn_peer *p = xdmvpn_peers6.lookup(dst);
	struct xdmvpn_lpm6_key k;

	if (p)
		return p;
	k.prefixlen = sizeof(*dst) * 8;
	__builtin_memcpy(&k.addr, dst, sizeof(k.addr));
	return xdmvpn_prefixes6.lookup(&k);
}

/* The IPv6 NBMA address of a mapping whose flags say so (NULL: none). */
static __always_inline struct xdmvpn_in6 *xdmvpn_nbma6_of(__u32 idx)
{
	return xdmvpn_nbma6.lookup(&idx);
}

/* Multicast (ff00::/8) and link-local unicast (fe80::/10) are not forwarded
 * between two peers by a router (RFC 4291 2.5.6, 2.7): their first 16 bits. */
static __always_inline int xdmvpn_scoped6(const struct xdmvpn_in6 *a)
{
	__u16 top = xdmvpn_ntohs(*(__be16 *)a);

	return (top >> 8) == XDMVPN_IPV6_MCAST_BYTE ||
	       (top & XDMVPN_IPV6_LL_MASK) == XDMVPN_IPV6_LL_WORD;
}

/* IPsec flags (XDMVPN_IPSEC_*) of an NBMA address; 0 when not compiled in. */
static __always_inline __u32 xdmvpn_ipsec_flags(__be32 nbma)
{
#if XDMVPN_IPSEC
	__u32 *f = xdmvpn_ipsec_peers.lookup(&nbma);

	return f ? *f : 0;
#else
	return 0;
#endif
}

/* RFC 1071 checksum of a 20-byte IPv4 header whose check field is zero. */
static __always_inline __u16 xdmvpn_ipv4_csum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < sizeof(*ip) / sizeof(*w); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Fill a 20-byte outer IPv4 header for GRE toward nbma.  tot_len in bytes;
 * inner_ttl is used when the tunnel's TTL is 0 (inherit). */
static __always_inline void xdmvpn_outer_ipv4(struct iphdr *ip, __u8 tos,
					      __u16 inner_frag, __u16 tot_len,
					      __be16 id, __be32 nbma, __u8 inner_ttl)
{
	__u16 frag = 0;

	if (XDMVPN_DF == XDMVPN_DF_SET ||
	    (XDMVPN_DF == XDMVPN_DF_INHERIT && (inner_frag & XDMVPN_IP_DF)))
		frag = XDMVPN_IP_DF;
	ip->version = XDMVPN_IPV4_VERSION;
	ip->ihl = XDMVPN_IPV4_MIN_IHL;
	ip->tos = tos;
	ip->tot_len = xdmvpn_htons(tot_len);
	ip->id = id;
	ip->frag_off = xdmvpn_htons(frag);
	ip->ttl = XDMVPN_TTL ? XDMVPN_TTL : inner_ttl;
	ip->protocol = XDMVPN_IPPROTO_GRE;
	ip->check = 0;
	ip->saddr = XDMVPN_LOCAL_NBMA_BE;
	ip->daddr = nbma;
	ip->check = xdmvpn_ipv4_csum(ip);
}

/* Fill a 40-byte outer IPv6 header for GRE from our IPv6 NBMA address (dst NULL:
 * left as it is).  payload_len in bytes; inner_ttl is used when the tunnel's TTL
 * (hop limit) is 0 (inherit).  No flow label. */
static __always_inline void xdmvpn_outer_ipv6(struct ipv6hdr *ip6, __u8 tclass,
					      __u16 payload_len,
					      const struct xdmvpn_in6 *dst, __u8 inner_ttl)
{
	*(__be32 *)ip6 = xdmvpn_htonl(((__u32)XDMVPN_IPV6_VERSION << 28) |
				      ((__u32)tclass << 20));
	ip6->payload_len = xdmvpn_htons(payload_len);
	ip6->nexthdr = XDMVPN_IPPROTO_GRE;
	ip6->hop_limit = XDMVPN_TTL ? XDMVPN_TTL : inner_ttl;
	xdmvpn_local6_words(ip6->saddr.in6_u.u6_addr32);
	if (dst)
		__builtin_memcpy(&ip6->daddr, dst, sizeof(*dst));
}

/* Write the GRE header of our tunnel (protocol proto, key when configured). */
static __always_inline void xdmvpn_gre_header(void *gre, __u16 proto)
{
	struct xdmvpn_grehdr *g = gre;

	g->flags = xdmvpn_htons(XDMVPN_HAS_KEY ? XDMVPN_GRE_F_KEY : 0);
	g->proto = xdmvpn_htons(proto);
#if XDMVPN_HAS_KEY
	*(__be32 *)(g + 1) = xdmvpn_htonl(XDMVPN_GRE_KEY);
#endif
}

static __always_inline void xdmvpn_set_mac(unsigned char *m, __u64 mac)
{
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		m[i] = mac >> (8 * (ETH_ALEN - 1 - i));
}

/* Reserve an event and fill its header; NULL (counted as lost) when the ring is full.
 * *n, the inner bytes available, becomes the count to copy: 1..XDMVPN_EVENT_DATA in a
 * form the verifier can see. */
static __always_inline struct xdmvpn_event *xdmvpn_event_start(__u32 type, __u32 flags,
							       __u32 *n)
{
	struct xdmvpn_event *ev = xdmvpn_events.ringbuf_reserve(sizeof(*ev));
	__u32 len = *n;

	if (!ev) {
		xdmvpn_count_path(XDMVPN_PATH_EVENT_LOST, 0);
		return 0;
	}
	ev->type = type;
	ev->flags = flags;
	ev->pad = 0;
	if (len > XDMVPN_EVENT_DATA)
		len = XDMVPN_EVENT_DATA;
	len = ((len - 1) & (XDMVPN_EVENT_DATA - 1)) + 1;
	ev->len = len;
	*n = len;
	return ev;
}

/* Rate limit for events.  A shared direct-mapped array indexed by a
 * multiplicative hash of (src, dst): the hot path is one inlined array
 * lookup and a compare of a coarse timestamp; the slot is written (with a
 * compare-and-swap, so two CPUs cannot both emit) only when an event is
 * emitted.  Pairs colliding in a slot share its budget: an event for one
 * of them may be delayed by at most one interval.  Returns 1 to emit. */
static __always_inline int xdmvpn_rl_allow(__be32 src, __be32 dst, __u64 now,
					   __u64 interval)
{
	__u32 h = ((__u32)src * XDMVPN_HASH_MUL_A) ^ (__u32)dst;
	__u32 idx = (h * XDMVPN_HASH_MUL_B) >> (sizeof(h) * 8 - XDMVPN_RL_BITS);
	struct xdmvpn_rl_slot *s = xdmvpn_ratelimit.lookup(&idx);
	__u64 old;

	if (!s)
		return 0;
	old = s->stamp_ns;
	if (old && now - old < interval)
		return 0;
	if (__sync_val_compare_and_swap(&s->stamp_ns, old, now) != old)
		return 0;
	s->src = src;
	s->dst = dst;
	return 1;
}

/* A traffic-indication trigger for the pair (src, dst), IPv6 ones folded: the
 * event (flags XDMVPN_F_*) whose addresses the caller fills, with up to *n bytes
 * of the inner packet, and submits (then counts XDMVPN_PATH_TRIGGER); NULL when
 * the rate limit holds it (counted) or the ring is full.  Shared by XDP's
 * hairpin and tc's ESP receive. */
static __always_inline struct xdmvpn_event *xdmvpn_trigger_start(__u32 flags, __be32 src,
								 __be32 dst, __u64 now,
								 __u32 *n)
{
	if (!xdmvpn_rl_allow(src, dst, now, XDMVPN_TRIGGER_INTERVAL_NS)) {
		xdmvpn_count_path(XDMVPN_PATH_TRIGGER_HELD, 0);
		return 0;
	}
	return xdmvpn_event_start(XDMVPN_EV_TRIGGER, flags, n);
}

/* Outer fib lookup toward nbma on the underlay.  Returns the BPF_FIB_LKUP_RET_*
 * code; on success fib->smac/dmac/ifindex are set. */
#define xdmvpn_fib(ctx_, fib_, nbma_, tos_, totlen_, flags_)                 \
	({                                                                    \
		__builtin_memset((fib_), 0, sizeof(*(fib_)));                 \
		(fib_)->family = AF_INET;                                     \
		(fib_)->tos = (tos_);                                         \
		(fib_)->l4_protocol = XDMVPN_IPPROTO_GRE;                     \
		(fib_)->tot_len = (totlen_);                                  \
		(fib_)->ifindex = XDMVPN_UNDERLAY_IFINDEX;                    \
		(fib_)->ipv4_src = XDMVPN_LOCAL_NBMA_BE;                      \
		(fib_)->ipv4_dst = (nbma_);                                   \
		bpf_fib_lookup((ctx_), (fib_), sizeof(*(fib_)), (flags_));    \
	})

/* The same toward an IPv6 NBMA address. */
#define xdmvpn_fib6(ctx_, fib_, dst6_, totlen_, flags_)                      \
	({                                                                    \
		__builtin_memset((fib_), 0, sizeof(*(fib_)));                 \
		(fib_)->family = AF_INET6;                                    \
		(fib_)->l4_protocol = XDMVPN_IPPROTO_GRE;                     \
		(fib_)->tot_len = (totlen_);                                  \
		(fib_)->ifindex = XDMVPN_UNDERLAY_IFINDEX;                    \
		xdmvpn_local6_words((fib_)->ipv6_src);                              \
		__builtin_memcpy((fib_)->ipv6_dst, (dst6_), 16);              \
		bpf_fib_lookup((ctx_), (fib_), sizeof(*(fib_)), (flags_));    \
	})

/* Toward nbma (IPv4), or nbma6 when not NULL. */
static __always_inline int xdmvpn_fib_any(void *ctx, struct bpf_fib_lookup *fib, __be32 nbma,
					  const struct xdmvpn_in6 *nbma6, __u16 tot_len,
					  __u32 flags)
{
	if (nbma6)
		return xdmvpn_fib6(ctx, fib, nbma6, tot_len, flags);
	return xdmvpn_fib(ctx, fib, nbma, 0, tot_len, flags);
}

/* (Re)fill the next-hop cache entry nh toward nbma (IPv4, or nbma6 when not
 * NULL, nbma then its fold) from the fib.  Returns the
 * BPF_FIB_LKUP_RET_* code; nh is valid only after SUCCESS.  fib is the
 * caller's (NO_NEIGH: its ifindex names the device).
 * The fib reports the route MTU only with FRAG_NEEDED, so the first lookup asks
 * for 64 KiB, the second one for the MACs with a length that fits any route (a
 * length of 0 would make tc's lookup check the skb itself against the device). */
static __always_inline int xdmvpn_nh_fill(void *ctx, struct bpf_fib_lookup *fib,
					  struct xdmvpn_nh *nh, __be32 nbma,
					  const struct xdmvpn_in6 *nbma6, __u64 now)
{
	__u16 mtu = XDMVPN_IPV4_MAX_LEN;
	int rc;

	rc = xdmvpn_fib_any(ctx, fib, nbma, nbma6, XDMVPN_IPV4_MAX_LEN, 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		mtu = fib->mtu_result;
	else if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return rc;
	rc = xdmvpn_fib_any(ctx, fib, nbma, nbma6, XDMVPN_IPV4_MIN_HLEN, 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->ifindex = fib->ifindex;
	nh->mtu = mtu;
	nh->nbma = nbma;
	nh->stamp_ns = now;
	xdmvpn_count_path(XDMVPN_PATH_NH_FILL, 0);
	return rc;
}

/* The cached next hop of mapping slot idx when it is fresh for nbma, else
 * NULL with *slot set to the entry to fill (NULL: no slot). */
static __always_inline struct xdmvpn_nh *xdmvpn_nh_get(__u32 idx, __be32 nbma, __u64 now,
						       struct xdmvpn_nh **slot)
{
	struct xdmvpn_nh *nh = xdmvpn_nh_cache.lookup(&idx);

	*slot = nh;
	if (nh && nh->nbma == nbma && now - nh->stamp_ns < XDMVPN_NH_CACHE_NS)
		return nh;
	return 0;
}

/* A failed tail call: the program slot is empty (start-up or teardown). */
#define xdmvpn_tail_failed(bytes_) xdmvpn_count_drop(XDMVPN_DROP_TAIL_CALL, (bytes_))

/* Admission by the generic cell rate algorithm (struct xdmvpn_bucket): 1 to
 * admit, which moves *tat on by cost; a refused packet writes nothing, so a
 * shared budget stays read-mostly under a flood.  The compare-and-swap makes
 * two CPUs that race for the last token admit one packet, not two. */
static __always_inline int xdmvpn_gcra(__u64 *tat, __u64 now, __u64 cost, __u64 burst)
{
	__u64 old = *tat;
	__u64 base = old > now ? old : now;

	if (base - now > (burst - 1) * cost)
		return 0;
	return __sync_val_compare_and_swap(tat, old, base + cost) == old;
}

#endif /* XDMVPN_LIB_H */
