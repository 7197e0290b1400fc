/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn tc programs (ingress of dmvpn0-dp, i.e. what the kernel sends out
 * of dmvpn0).
 *
 * xdmvpn_tc_encap (IPv4; IPv6: xdmvpn_tc_encap6, tail-called) classifies,
 * with a TCP MSS clamp on SYNs (xdmvpn_tc_mss), then xdmvpn_tc_build (outer
 * IPv4) or xdmvpn_tc_build6 (outer IPv6, toward an IPv6 NBMA address) sends:
 *   multicast/broadcast -> outer headers once, xdmvpn_tc_mcast clones it to
 *                           the IPv4 multicast set, xdmvpn_tc_mcast6 to the
 *                           IPv6 one (IPv6: ff00::/8 of scope 2 and wider)
 *   mapped destination   -> outer IP + GRE + Ethernet, redirect to underlay
 *   no mapping           -> the mapping of the kernel route's gateway, else
 *                           the NHS when there is one, else drop (no event:
 *                           the hub's traffic indication starts a shortcut)
 *   IPsec peer           -> outer headers, then up the stack to xfrm (never a
 *                           redirect); no CHILD_SA: drop
 *   IPv6 above the path MTU -> xdmvpn_tc_ptb: ICMPv6 Packet Too Big back into
 *                           dmvpn0 (IPv4 above it: dropped, as the kernel's
 *                           own MTU on dmvpn0 keeps it rare)
 * xdmvpn_tc_guard (underlay egress, with XDMVPN_IPSEC): plaintext GRE to an
 *   IPsec peer is dropped.
 * xdmvpn_tc_esp_rx (ingress of <tunnel>-rx, with XDMVPN_IPSEC): GRE decrypted
 *   from ESP, onto the overlay.
 * xdmvpn_tc_sink (ingress of <tunnel>-rx / -r6 without ESP receive, when the
 *   kernel has ip_gre / ip6_gre loaded): drops all.
 * xdmvpn_tc_mcast (tail call): one copy per multicast-set entry, a batch of
 *   XDMVPN_MCAST_BATCH per call, the position carried in skb->cb[0].
 * Every TC_ACT_SHOT that discards a packet counts one reason of enum xdmvpn_drop
 * (the original skb of a multicast, consumed after its copies, is not a drop;
 * neither is the kernel's second copy of NHRP, which the controller's raw socket
 * took before ip_gre handed it to a collect_md device, nor what the sink ends).
 */
#include <uapi/linux/pkt_cls.h>
#include "xdmvpn_lib.h"

#include <uapi/linux/icmpv6.h>

/* bcc 0.26 declares bpf_redirect_neigh without its plen argument. */
static long (*xdmvpn_redirect_neigh)(__u32 ifindex, struct bpf_redir_neigh *params,
				     int plen, __u64 flags) =
	(void *)BPF_FUNC_redirect_neigh;

/* 0 and *out = the TCP header for a SYN carrying options (not a fragment). */
static __always_inline int xdmvpn_syn(struct __sk_buff *skb, struct xdmvpn_tcphdr **out)
{
	struct xdmvpn_cursor c = { .pos = (void *)(long)skb->data,
				   .end = (void *)(long)skb->data_end };
	struct ipv6hdr *ip6;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct xdmvpn_tcphdr *tcp;
	int proto = xdmvpn_parse_eth(&c, &eth);

	if (proto == xdmvpn_htons(ETH_P_IPV6)) {
		/* TCP right after the header (no extension headers: a SYN has none) */
		if (xdmvpn_parse_ipv6(&c, &ip6) < 0 || ip6->nexthdr != XDMVPN_IPPROTO_TCP)
			return -1;
	} else if (proto != xdmvpn_htons(ETH_P_IP) ||
		   xdmvpn_parse_ipv4(&c, &ip) < 0 || ip->protocol != XDMVPN_IPPROTO_TCP ||
		   (ip->frag_off & xdmvpn_htons(XDMVPN_IP_MF | XDMVPN_IP_OFFSET))) {
		return -1;
	}
	if (xdmvpn_parse_tcp(&c, &tcp) || !(tcp->flags & XDMVPN_TCP_SYN) ||
	    xdmvpn_tcp_doff(tcp) * XDMVPN_HDR_WORD <= sizeof(*tcp))
		return -1;
	*out = tcp;
	return 0;
}

/* MSS clamp, one TCP option per call: xdmvpn_tc_mss looks at the option at
 * offset cb[XDMVPN_CB_MSS] & XDMVPN_CB_MSS_OFF_MASK (count of options seen
 * above XDMVPN_CB_MSS_SEEN_SHIFT), lowers an MSS above XDMVPN_ADJUST_MSS, and
 * tail-calls itself for the next option (XDMVPN_MSS_MAX_OPTIONS at most), then
 * xdmvpn_tc_build.  One option per program keeps the
 * verifier's work small; only SYNs with options take this path. */
int xdmvpn_tc_mss(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct xdmvpn_tcphdr *tcp;
	__u32 st = skb->cb[XDMVPN_CB_MSS];
	__u32 i = st & XDMVPN_CB_MSS_OFF_MASK, n = st >> XDMVPN_CB_MSS_SEEN_SHIFT;
	__u8 *p;

	if (xdmvpn_syn(skb, &tcp) || n >= XDMVPN_MSS_MAX_OPTIONS ||
	    i >= xdmvpn_tcp_doff(tcp) * XDMVPN_HDR_WORD - sizeof(*tcp))
		goto done;
	p = (__u8 *)(tcp + 1) + i;
	if ((void *)(p + XDMVPN_TCPOLEN_MSS) > data_end || p[0] == XDMVPN_TCPOPT_EOL)
		goto done;
	if (p[0] == XDMVPN_TCPOPT_MSS && p[1] == XDMVPN_TCPOLEN_MSS) {
		__be16 *value = (__be16 *)(p + XDMVPN_TCPOLEN_MIN);
		__u16 mss = xdmvpn_ntohs(*value);
		__u32 tcp_off = (void *)tcp - data;
		__u32 off = tcp_off + sizeof(*tcp) + i + XDMVPN_TCPOLEN_MIN;
		__u32 csum_off = tcp_off + __builtin_offsetof(struct xdmvpn_tcphdr, check);
		__be16 old_v = *value;
		__be16 new_v = xdmvpn_htons(XDMVPN_ADJUST_MSS);

		if (mss <= XDMVPN_ADJUST_MSS)
			goto done;
		*value = new_v;
		if (off & 1) {
			/* Odd offset: the word sits byte-swapped in the sum. */
			old_v = __builtin_bswap16(old_v);
			new_v = __builtin_bswap16(new_v);
		}
		bpf_l4_csum_replace(skb, csum_off, old_v, new_v, sizeof(new_v));
		xdmvpn_count_path(XDMVPN_PATH_MSS_CLAMPED, 0);
		goto done;
	}
	if (p[0] != XDMVPN_TCPOPT_NOP && p[1] < XDMVPN_TCPOLEN_MIN)
		goto done;
	skb->cb[XDMVPN_CB_MSS] = (i + (p[0] == XDMVPN_TCPOPT_NOP ? 1 : p[1])) |
				 ((n + 1) << XDMVPN_CB_MSS_SEEN_SHIFT);
	xdmvpn_progs.call(skb, XDMVPN_PROG_MSS);
done:
	xdmvpn_progs.call(skb, (skb->cb[XDMVPN_CB_FLAGS] & XDMVPN_F_PEER6) ? XDMVPN_PROG_BUILD6
									 : XDMVPN_PROG_BUILD);
	xdmvpn_tail_failed(skb->len);
	return TC_ACT_SHOT;
}

/* Make room after Ethernet and write the outer header (IPv4, or IPv6 with
 * to6; destination left 0) + GRE in front of the inner packet (IPv6 with
 * inner6) described by tos, frag and ttl. */
static __always_inline int xdmvpn_push_outer(struct __sk_buff *skb, const int to6, int inner6,
					     __u8 tos, __u16 inner_frag, __u8 inner_ttl)
{
	const __u32 outer_len = to6 ? XDMVPN_OUTER6_LEN : XDMVPN_OUTER4_LEN;
	__u16 tot_len = skb->len - ETH_HLEN + outer_len;
	void *data, *data_end;
	struct ethhdr *eth;
	__be16 id = 0;

	if (bpf_skb_adjust_room(skb, outer_len, BPF_ADJ_ROOM_MAC,
				(to6 ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 : BPF_F_ADJ_ROOM_ENCAP_L3_IPV4) |
				BPF_F_ADJ_ROOM_ENCAP_L4_GRE))
		return -XDMVPN_DROP_ADJUST_ROOM;
	/* adjust_room moved the data: derive the pointers again. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if (data + ETH_HLEN + outer_len > data_end)
		return -XDMVPN_DROP_BOUNDS;
	if (to6) {
		eth->h_proto = xdmvpn_htons(ETH_P_IPV6);
		xdmvpn_outer_ipv6(data + ETH_HLEN, tos, tot_len - XDMVPN_IPV6_HLEN, 0, inner_ttl);
	} else {
		eth->h_proto = xdmvpn_htons(ETH_P_IP);
		if (!(XDMVPN_DF == XDMVPN_DF_SET ||
		      (XDMVPN_DF == XDMVPN_DF_INHERIT && (inner_frag & XDMVPN_IP_DF))))
			id = (__be16)bpf_get_prandom_u32();
		xdmvpn_outer_ipv4(data + ETH_HLEN, tos, inner_frag, tot_len, id, 0, inner_ttl);
	}
	xdmvpn_gre_header(data + ETH_HLEN + outer_len - XDMVPN_GRE_HLEN,
			  inner6 ? XDMVPN_GRE_PROTO_IPV6 : XDMVPN_GRE_PROTO_IPV4);
	return 0;
}

/* Write the outer destination (IPv4 and its header checksum, or n6 into the
 * outer IPv6 header) of the encapsulated skb. */
static __always_inline int xdmvpn_set_dst(struct __sk_buff *skb, __be32 nbma,
					  const struct xdmvpn_in6 *n6)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	struct iphdr *ip = data + ETH_HLEN;

	if (n6) {
		if ((void *)(ip6 + 1) > data_end)
			return -XDMVPN_DROP_BOUNDS;
		__builtin_memcpy(&ip6->daddr, n6, sizeof(*n6));
		return 0;
	}
	if ((void *)(ip + 1) > data_end)
		return -XDMVPN_DROP_BOUNDS;
	ip->daddr = nbma;
	ip->check = 0;
	ip->check = xdmvpn_ipv4_csum(ip);
	return 0;
}

/* Write the Ethernet addresses (after the pointers are derived again). */
static __always_inline int xdmvpn_set_l2(struct __sk_buff *skb, const __u8 *dmac,
					 const __u8 *smac)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -XDMVPN_DROP_BOUNDS;
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	return 0;
}

/* The encapsulated skb (outer destination written) is for an IPsec peer:
 * a redirect would bypass xfrm, so it goes up the stack of dmvpn0-dp, which
 * forwards it to the underlay through the xfrm output policy (dmvpn0-dp has
 * forwarding and accept_local on, rp_filter off: attach.prepare_ipsec). */
static __always_inline int xdmvpn_to_stack(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -XDMVPN_DROP_BOUNDS;
	xdmvpn_set_mac(eth->h_dest, XDMVPN_OVERLAY_DP_MAC);
	xdmvpn_set_mac(eth->h_source, XDMVPN_OVERLAY_MAC);
	if (bpf_skb_change_type(skb, PACKET_HOST))
		return -XDMVPN_DROP_CHANGE_TYPE;
	xdmvpn_count_path(XDMVPN_PATH_ENCAP_XFRM, skb->len);
	return TC_ACT_OK;
}

/* IPsec decision for an encapsulated packet toward nbma: 0 not an IPsec peer
 * (send as usual), 1 hand it to the stack (xfrm), -XDMVPN_DROP_IPSEC_NO_SA
 * while its CHILD_SA is not up.  One map lookup, none without XDMVPN_IPSEC. */
static __always_inline int xdmvpn_ipsec_route(__be32 nbma)
{
	__u32 f = xdmvpn_ipsec_flags(nbma);

	if (!(f & XDMVPN_IPSEC_REQUIRED))
		return 0;
	return (f & XDMVPN_IPSEC_SA_UP) ? 1 : -XDMVPN_DROP_IPSEC_NO_SA;
}

/* Send a copy of the encapsulated skb to nbma, or n6 when not NULL (multicast:
 * fib lookup per copy; an IPsec peer's copy goes back into dmvpn0-dp, see
 * xdmvpn_tc_encap). */
static __always_inline int xdmvpn_send_copy(struct __sk_buff *skb, __be32 nbma,
					    const struct xdmvpn_in6 *n6)
{
	struct bpf_fib_lookup fib;
	int rc;

	rc = xdmvpn_set_dst(skb, nbma, n6);
	if (rc < 0)
		return rc;
	if (!n6) {
		rc = xdmvpn_ipsec_route(nbma);
		if (rc < 0)
			return rc;
		if (rc)
			return bpf_clone_redirect(skb, XDMVPN_OVERLAY_IFINDEX, BPF_F_INGRESS) ?
				-XDMVPN_DROP_CLONE : 0;
	}
	rc = xdmvpn_fib_any(skb, &fib, nbma, n6, 0, BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return -XDMVPN_DROP_NO_NEIGH;
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return -XDMVPN_DROP_TOO_BIG;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return -XDMVPN_DROP_NO_ROUTE;
	rc = xdmvpn_set_l2(skb, fib.dmac, fib.smac);
	if (rc < 0)
		return rc;
	return bpf_clone_redirect(skb, fib.ifindex, 0) ? -XDMVPN_DROP_CLONE : 0;
}

/* The verdict of a redirect helper: TC_ACT_REDIRECT, or the drop it means. */
static __always_inline int xdmvpn_redirected(long v)
{
	return v == TC_ACT_REDIRECT ? TC_ACT_REDIRECT : -XDMVPN_DROP_REDIRECT;
}

/* A unicast packet whose next hop is not cached (or stale), before any header
 * is pushed: fill the mapping's entry from the fib (the route's MTU with it),
 * then back to the build program; no neighbour yet: back with XDMVPN_F_NEIGH
 * (the build program sends through bpf_redirect_neigh). */
int xdmvpn_tc_nhfill(struct __sk_buff *skb)
{
	__u32 flags = skb->cb[XDMVPN_CB_FLAGS], idx = skb->cb[XDMVPN_CB_STATS];
	__u32 to6 = flags & XDMVPN_F_PEER6;
	struct xdmvpn_in6 *n6 = 0;
	struct bpf_fib_lookup fib;
	__u64 bytes = skb->len;
	struct xdmvpn_nh *nh;
	__u32 reason;
	int rc;

	if (to6) {
		n6 = xdmvpn_nbma6_of(idx);
		if (!n6) {
			reason = XDMVPN_DROP_NH_SLOT;
			goto drop;
		}
	}
	nh = xdmvpn_nh_cache.lookup(&idx);
	if (!nh) {
		reason = XDMVPN_DROP_NH_SLOT;
		goto drop;
	}
	rc = xdmvpn_nh_fill(skb, &fib, nh, skb->cb[XDMVPN_CB_NBMA], n6, xdmvpn_now());
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		skb->cb[XDMVPN_CB_MSS] = fib.ifindex;
		flags |= XDMVPN_F_NEIGH;
	} else if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		flags |= XDMVPN_F_FILLED;
	} else {
		reason = XDMVPN_DROP_NO_ROUTE;
		goto drop;
	}
	skb->cb[XDMVPN_CB_FLAGS] = flags;
	xdmvpn_progs.call(skb, to6 ? XDMVPN_PROG_BUILD6 : XDMVPN_PROG_BUILD);
	reason = XDMVPN_DROP_TAIL_CALL;
drop:
	xdmvpn_count_drop(reason, bytes);
	return TC_ACT_SHOT;
}

/* The kernel routed dst out of the tunnel interface without a host or prefix
 * entry (a route via a tunnel peer that the controller has not mirrored into
 * the prefix map yet, or one it leaves to the kernel): when the route names a
 * gateway that is a mapped peer, that peer's entry, as a kernel mGRE device
 * would take it from the gateway's neighbour entry. */
static __always_inline struct xdmvpn_peer *xdmvpn_route_kernel(struct __sk_buff *skb,
							       __be32 src, __be32 dst)
{
	struct bpf_fib_lookup fib;
	int rc;

	if (!XDMVPN_TUNNEL_IFINDEX)
		return 0;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET;
	fib.ifindex = XDMVPN_TUNNEL_IFINDEX;
	fib.ipv4_src = src;
	fib.ipv4_dst = dst;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH &&
	    rc != BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return 0;
	if (fib.ifindex != XDMVPN_TUNNEL_IFINDEX || fib.ipv4_dst == dst)
		return 0;
	return xdmvpn_peers.lookup(&fib.ipv4_dst);
}

/* The same for an IPv6 destination (IPv6 forwarding on dmvpn0). */
static __always_inline struct xdmvpn_peer *xdmvpn_route_kernel6(struct __sk_buff *skb,
								struct ipv6hdr *ip6)
{
	struct bpf_fib_lookup fib;
	struct xdmvpn_in6 gw;
	int rc;

	if (!XDMVPN_TUNNEL_IFINDEX)
		return 0;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET6;
	fib.ifindex = XDMVPN_TUNNEL_IFINDEX;
	__builtin_memcpy(fib.ipv6_src, &ip6->saddr, sizeof(fib.ipv6_src));
	__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, sizeof(fib.ipv6_dst));
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH &&
	    rc != BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return 0;
	__builtin_memcpy(&gw, fib.ipv6_dst, sizeof(gw));
	if (fib.ifindex != XDMVPN_TUNNEL_IFINDEX ||
	    xdmvpn_eq6(&gw, (struct xdmvpn_in6 *)&ip6->daddr))
		return 0;
	return xdmvpn_peers6.lookup(&gw);
}

/* On to the build program of the outer family; multicast starts with the IPv4
 * set unless it is empty.  flags: XDMVPN_F_* of the packet. */
static __always_inline int xdmvpn_to_build(struct __sk_buff *skb, __u32 flags, __u64 bytes)
{
	if (skb->cb[XDMVPN_CB_PATH] == XDMVPN_PATH_MCAST) {
		__u32 zero = 0;
		__be32 *first = xdmvpn_mcast.lookup(&zero);

		if (XDMVPN_HAS_NBMA6 && (!first || !*first))
			flags |= XDMVPN_F_PEER6;
	}
	skb->cb[XDMVPN_CB_FLAGS] = flags;
	xdmvpn_progs.call(skb, (flags & XDMVPN_F_PEER6) ? XDMVPN_PROG_BUILD6 : XDMVPN_PROG_BUILD);
	xdmvpn_tail_failed(bytes);
	return TC_ACT_SHOT;
}

/* A unicast destination's entry (NULL: none, NHS either): into skb->cb, with
 * the MSS clamp of a SYN first.  Returns the XDMVPN_F_PEER6 flag of it. */
static __always_inline __u32 xdmvpn_to_peer(struct __sk_buff *skb, struct xdmvpn_peer *peer,
					    __u32 path)
{
	skb->cb[XDMVPN_CB_NBMA] = peer->nbma;
	skb->cb[XDMVPN_CB_STATS] = peer->stats_idx;
	skb->cb[XDMVPN_CB_PATH] = path;
	return (peer->flags & XDMVPN_PEER_NBMA6) ? XDMVPN_F_PEER6 : 0;
}

/* No entry: the NHS (spoke), else NULL. */
static __always_inline struct xdmvpn_peer *xdmvpn_nhs_peer(void)
{
	__u32 i = 0;
	struct xdmvpn_peer *peer = xdmvpn_nhs.lookup(&i);

	return (peer && (peer->nbma || peer->flags)) ? peer : 0;
}

/* MSS clamp of a SYN (that program tail-calls the build program itself). */
static __always_inline void xdmvpn_maybe_mss(struct __sk_buff *skb, __u32 flags)
{
	struct xdmvpn_tcphdr *tcp;

	if (XDMVPN_ADJUST_MSS && !xdmvpn_syn(skb, &tcp)) {
		skb->cb[XDMVPN_CB_MSS] = 0;
		skb->cb[XDMVPN_CB_FLAGS] = flags;
		xdmvpn_progs.call(skb, XDMVPN_PROG_MSS);
	}
}

/* A unicast packet with its entry (NULL: the NHS's, else dropped), on to the
 * build program (through the MSS clamp for a SYN). */
static __always_inline int xdmvpn_to_unicast(struct __sk_buff *skb, struct xdmvpn_peer *peer,
					     __u32 path, __u32 flags, __u64 bytes)
{
	if (!peer) {
		peer = xdmvpn_nhs_peer();
		path = XDMVPN_PATH_ENCAP_NHS;
	}
	if (!peer) {
		xdmvpn_count_drop(XDMVPN_DROP_NO_MAPPING, bytes);
		return TC_ACT_SHOT;
	}
	flags |= xdmvpn_to_peer(skb, peer, path);
	xdmvpn_maybe_mss(skb, flags);
	return xdmvpn_to_build(skb, flags, bytes);
}

/* Classify the overlay packet and hand it to the build program through skb->cb. */
int xdmvpn_tc_encap(struct __sk_buff *skb)
{
	struct xdmvpn_cursor c;
	struct xdmvpn_peer *peer;
	__u32 path = XDMVPN_PATH_ENCAP, flags = 0;
	__u64 bytes = skb->len;
	struct ethhdr *eth;
	struct iphdr *ip;
	__be32 src, dst;
	int proto;

	c.pos = (void *)(long)skb->data;
	c.end = (void *)(long)skb->data_end;
	proto = xdmvpn_parse_eth(&c, &eth);
	if (proto == xdmvpn_htons(ETH_P_IPV6)) {
		xdmvpn_progs.call(skb, XDMVPN_PROG_ENCAP6);
		xdmvpn_tail_failed(bytes);
		return TC_ACT_SHOT;
	}
	if (proto != xdmvpn_htons(ETH_P_IP) || xdmvpn_parse_ipv4(&c, &ip) < 0) {
		xdmvpn_count_drop(XDMVPN_DROP_OVERLAY_NOT_IPV4, bytes);
		return TC_ACT_SHOT;
	}
	src = ip->saddr;
	dst = ip->daddr;
	flags = ((__u32)ip->tos << XDMVPN_CB_TOS_SHIFT) | ((__u32)ip->ttl << XDMVPN_CB_TTL_SHIFT) |
		((ip->frag_off & xdmvpn_htons(XDMVPN_IP_DF)) ? XDMVPN_CB_DF : 0);
#if XDMVPN_IPSEC
	/* A multicast copy for an IPsec peer, cloned back in by xdmvpn_tc_mcast. */
	if (ip->protocol == XDMVPN_IPPROTO_GRE && src == XDMVPN_LOCAL_NBMA_BE) {
		int v = xdmvpn_to_stack(skb);

		if (v < 0) {
			xdmvpn_count_drop(-v, bytes);
			return TC_ACT_SHOT;
		}
		return v;
	}
#endif

	if ((dst & xdmvpn_htonl(XDMVPN_IPV4_MCAST_MASK)) == xdmvpn_htonl(XDMVPN_IPV4_MCAST_NET) ||
	    dst == xdmvpn_htonl(XDMVPN_IPV4_BROADCAST)) {
		skb->cb[XDMVPN_CB_PATH] = XDMVPN_PATH_MCAST;
		return xdmvpn_to_build(skb, flags, bytes);
	}
	peer = xdmvpn_route(dst);
	if (!peer) {
		peer = xdmvpn_route_kernel(skb, src, dst);
		path = XDMVPN_PATH_ENCAP_ROUTE;
	}
	return xdmvpn_to_unicast(skb, peer, path, flags, bytes);
}

/* The same for an IPv6 overlay packet.  Multicast (ff00::/8) goes to the
 * multicast sets from link-local scope up: scopes 0 (reserved) and 1
 * (interface-local) never leave the node (RFC 4291 2.7). */
int xdmvpn_tc_encap6(struct __sk_buff *skb)
{
	struct xdmvpn_cursor c;
	struct xdmvpn_peer *peer;
	__u32 path = XDMVPN_PATH_ENCAP, flags;
	__u64 bytes = skb->len;
	struct ipv6hdr *ip6;
	struct ethhdr *eth;
	__u8 *dst;

	c.pos = (void *)(long)skb->data;
	c.end = (void *)(long)skb->data_end;
	if (xdmvpn_parse_eth(&c, &eth) != xdmvpn_htons(ETH_P_IPV6) ||
	    xdmvpn_parse_ipv6(&c, &ip6) < 0) {
		xdmvpn_count_drop(XDMVPN_DROP_OVERLAY_NOT_IPV4, bytes);
		return TC_ACT_SHOT;
	}
	flags = XDMVPN_F_INNER6 | XDMVPN_CB_DF | ((__u32)ip6->hop_limit << XDMVPN_CB_TTL_SHIFT) |
		(((xdmvpn_ntohs(*(__be16 *)ip6) >> 4) & 0xff) << XDMVPN_CB_TOS_SHIFT);
	dst = (__u8 *)&ip6->daddr;
	if (dst[0] == XDMVPN_IPV6_MCAST_BYTE) {
		if ((dst[1] & 0x0f) < XDMVPN_IPV6_SCOPE_LINK) {
			xdmvpn_count_drop(XDMVPN_DROP_MCAST_SCOPE, bytes);
			return TC_ACT_SHOT;
		}
		skb->cb[XDMVPN_CB_PATH] = XDMVPN_PATH_MCAST;
		return xdmvpn_to_build(skb, flags, bytes);
	}
	peer = xdmvpn_route6((struct xdmvpn_in6 *)dst);
	if (!peer) {
		peer = xdmvpn_route_kernel6(skb, ip6);
		path = XDMVPN_PATH_ENCAP_ROUTE;
	}
	return xdmvpn_to_unicast(skb, peer, path, flags, bytes);
}

/* Outer headers (IPv4, or IPv6 with to6) for the packet the encap programs
 * classified.  Unicast: the next hop from the cache (not cached: xdmvpn_tc_nhfill
 * first), the path MTU checked before anything is pushed (an IPv6 packet too
 * big: xdmvpn_tc_ptb answers it), push, send.  Multicast: push, on to the
 * multicast program of the family. */
static __always_inline int xdmvpn_build(struct __sk_buff *skb, const int to6)
{
	const __u32 outer_len = to6 ? XDMVPN_OUTER6_LEN : XDMVPN_OUTER4_LEN;
	__u32 path = skb->cb[XDMVPN_CB_PATH];
	__u32 idx = skb->cb[XDMVPN_CB_STATS];
	__be32 nbma = skb->cb[XDMVPN_CB_NBMA];
	__u32 flags = skb->cb[XDMVPN_CB_FLAGS];
	__u32 inner6 = flags & XDMVPN_F_INNER6;
	struct xdmvpn_in6 *n6 = 0;
	struct xdmvpn_nh *nh = 0;
	__u64 bytes = skb->len, now = 0;
	int rc = 0;

	if (path != XDMVPN_PATH_MCAST) {
		if (to6) {
			n6 = xdmvpn_nbma6_of(idx);
			if (!n6)
				rc = -XDMVPN_DROP_NH_SLOT;
		} else {
			rc = xdmvpn_ipsec_route(nbma);
		}
		if (rc < 0)
			goto out;
		now = xdmvpn_now();
		if (rc == 0 && !(flags & XDMVPN_F_NEIGH)) {
			nh = xdmvpn_nh_cache.lookup(&idx);
			if (!nh) {
				rc = -XDMVPN_DROP_NH_SLOT;
				goto out;
			}
			if ((nh->nbma != nbma || now - nh->stamp_ns >= XDMVPN_NH_CACHE_NS) &&
			    !(flags & XDMVPN_F_FILLED)) {
				xdmvpn_progs.call(skb, XDMVPN_PROG_NHFILL);
				rc = -XDMVPN_DROP_TAIL_CALL;
				goto out;
			}
			if (skb->len - ETH_HLEN + outer_len > nh->mtu) {
				skb->cb[XDMVPN_CB_MSS] = nh->mtu;
				if (inner6)
					xdmvpn_progs.call(skb, XDMVPN_PROG_PTB);
				rc = -XDMVPN_DROP_TOO_BIG;
				goto out;
			}
		}
	}
	rc = xdmvpn_push_outer(skb, to6, inner6, flags >> XDMVPN_CB_TOS_SHIFT,
			       (flags & XDMVPN_CB_DF) ? XDMVPN_IP_DF : 0,
			       flags >> XDMVPN_CB_TTL_SHIFT);
	if (rc < 0)
		goto out;
	if (path == XDMVPN_PATH_MCAST) {
		skb->cb[XDMVPN_CB_NBMA] = 0;
		xdmvpn_progs.call(skb, to6 ? XDMVPN_PROG_MCAST6 : XDMVPN_PROG_MCAST);
		rc = -XDMVPN_DROP_TAIL_CALL;
		goto out;
	}
	{
		struct xdmvpn_peer p = { .stats_idx = idx };

		xdmvpn_count_peer(&p, bytes, now);
	}
	rc = xdmvpn_set_dst(skb, nbma, n6);
	if (rc < 0)
		goto out;
	if (!to6 && !nh && !(flags & XDMVPN_F_NEIGH)) {
		rc = xdmvpn_to_stack(skb);           /* an IPsec peer's: through xfrm */
		goto out;
	}
	if (flags & XDMVPN_F_NEIGH) {
		xdmvpn_count_path(XDMVPN_PATH_ENCAP_NEIGH, 0);
		rc = xdmvpn_redirected(xdmvpn_redirect_neigh(skb->cb[XDMVPN_CB_MSS], 0, 0, 0));
	} else if (nh) {
		rc = xdmvpn_set_l2(skb, nh->dmac, nh->smac);
		if (rc == 0)
			rc = xdmvpn_redirected(bpf_redirect(nh->ifindex, 0));
	}
	if (rc >= 0)
		xdmvpn_count_path(path, bytes);
out:
	if (rc < 0) {
		xdmvpn_count_drop(-rc, bytes);
		return TC_ACT_SHOT;
	}
	return rc;
}

int xdmvpn_tc_build(struct __sk_buff *skb)
{
	return xdmvpn_build(skb, 0);
}

int xdmvpn_tc_build6(struct __sk_buff *skb)
{
	return xdmvpn_build(skb, 1);
}

/* One batch of multicast copies from the position in cb[XDMVPN_CB_NBMA] of the
 * IPv4 set (or the IPv6 one, to6), the packet's outer header of that family.
 * After the IPv4 set, the IPv6 set: the outer IPv4 header grows into an IPv6
 * one (skb->protocol stays IPv4: only Ethernet on the wire says IPv6). */
static __always_inline int xdmvpn_mcast_batch(struct __sk_buff *skb, const int to6)
{
	const __u32 outer_len = to6 ? XDMVPN_OUTER6_LEN : XDMVPN_OUTER4_LEN;
	__u32 base = skb->cb[XDMVPN_CB_NBMA];
	__u64 bytes = skb->len - outer_len;
	struct xdmvpn_in6 *n6 = 0;
	__be32 nbma = 0;

#pragma unroll
	for (int j = 0; j < (to6 ? XDMVPN_MCAST6_BATCH : XDMVPN_MCAST_BATCH); j++) {
		__u32 i = base + j;
		int rc;

		if (i >= XDMVPN_MCAST_MAX)
			goto done;
		if (to6) {
			n6 = xdmvpn_mcast6.lookup(&i);
			if (!n6 || !(n6->w[0] | n6->w[1] | n6->w[2] | n6->w[3]))
				goto done;
		} else {
			__be32 *a = xdmvpn_mcast.lookup(&i);

			if (!a || !*a)
				goto done;
			nbma = *a;
		}
		rc = xdmvpn_send_copy(skb, nbma, n6);
		if (rc < 0)
			xdmvpn_count_drop(-rc, bytes);
		else
			xdmvpn_count_path(XDMVPN_PATH_MCAST, bytes);
	}
	skb->cb[XDMVPN_CB_NBMA] = base + (to6 ? XDMVPN_MCAST6_BATCH : XDMVPN_MCAST_BATCH);
	xdmvpn_progs.call(skb, to6 ? XDMVPN_PROG_MCAST6 : XDMVPN_PROG_MCAST);
	xdmvpn_tail_failed(bytes);
	return TC_ACT_SHOT;
done:
	if (!to6 && XDMVPN_HAS_NBMA6) {
		skb->cb[XDMVPN_CB_NBMA] = XDMVPN_MCAST_CONVERT;
		xdmvpn_progs.call(skb, XDMVPN_PROG_MCAST6);
		xdmvpn_tail_failed(bytes);
	}
	return TC_ACT_SHOT;
}

/* After the IPv4 set: an IPv6 set to send to?  The outer IPv4 header grows into
 * an IPv6 one (skb->protocol stays IPv4: only Ethernet on the wire says IPv6). */
static __always_inline int xdmvpn_mcast_convert(struct __sk_buff *skb)
{
	__u32 zero = 0, flags = skb->cb[XDMVPN_CB_FLAGS];
	struct xdmvpn_in6 *first = xdmvpn_mcast6.lookup(&zero);
	void *data, *data_end;

	if (!first || !(first->w[0] | first->w[1] | first->w[2] | first->w[3]))
		return 0;
	if (bpf_skb_adjust_room(skb, XDMVPN_OUTER6_LEN - XDMVPN_OUTER4_LEN, BPF_ADJ_ROOM_MAC, 0))
		return -XDMVPN_DROP_ADJUST_ROOM;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + ETH_HLEN + XDMVPN_IPV6_HLEN > data_end)
		return -XDMVPN_DROP_BOUNDS;
	((struct ethhdr *)data)->h_proto = xdmvpn_htons(ETH_P_IPV6);
	xdmvpn_outer_ipv6(data + ETH_HLEN, flags >> XDMVPN_CB_TOS_SHIFT,
			  skb->len - ETH_HLEN - XDMVPN_IPV6_HLEN, 0, flags >> XDMVPN_CB_TTL_SHIFT);
	return 1;
}

int xdmvpn_tc_mcast(struct __sk_buff *skb)
{
	return xdmvpn_mcast_batch(skb, 0);
}

int xdmvpn_tc_mcast6(struct __sk_buff *skb)
{
	if (skb->cb[XDMVPN_CB_NBMA] == XDMVPN_MCAST_CONVERT) {
		int rc = xdmvpn_mcast_convert(skb);

		if (rc <= 0) {
			if (rc < 0)
				xdmvpn_count_drop(-rc, skb->len - XDMVPN_OUTER4_LEN);
			return TC_ACT_SHOT;
		}
		skb->cb[XDMVPN_CB_NBMA] = 0;
		xdmvpn_progs.call(skb, XDMVPN_PROG_MCAST6);
		xdmvpn_tail_failed(skb->len - XDMVPN_OUTER6_LEN);
		return TC_ACT_SHOT;
	}
	return xdmvpn_mcast_batch(skb, 1);
}

/* ICMPv6 Packet Too Big (RFC 4443 3.2) for an IPv6 packet (not encapsulated yet)
 * that, encapsulated (outer header of cb[XDMVPN_CB_FLAGS]'s family), would exceed
 * the path MTU in cb[XDMVPN_CB_MSS]: from our overlay address (xdmvpn_local6) to its source,
 * with the tunnel's MTU for IPv6 and the packet's first bytes up to 1,280 in
 * all, sent into dmvpn0 (the kernel delivers it, or forwards it to the source).
 * At most XDMVPN_PTB_BURST at once, one per XDMVPN_PTB_COST_NS after that. */
int xdmvpn_tc_ptb(struct __sk_buff *skb)
{
	__u32 outer_len = (skb->cb[XDMVPN_CB_FLAGS] & XDMVPN_F_PEER6) ? XDMVPN_OUTER6_LEN
								       : XDMVPN_OUTER4_LEN;
	__u32 mtu = skb->cb[XDMVPN_CB_MSS], zero = 0;
	const __u32 end = ETH_HLEN + XDMVPN_IPV6_MIN_MTU;
	__u64 bytes = skb->len, sum;
	struct xdmvpn_bucket *g;
	struct xdmvpn_in6 *me;
	struct ipv6hdr *ip6;
	struct icmp6hdr *icmp;
	void *data, *data_end;
	struct ethhdr *eth;

	me = xdmvpn_local6.lookup(&zero);
	if (!me || !(me->w[0] | me->w[1] | me->w[2] | me->w[3]) ||
	    bytes < end - XDMVPN_IPV6_HLEN - XDMVPN_ICMP6_HLEN)
		goto too_big;           /* no address to send it from; a tiny path MTU */
	g = xdmvpn_ptb_budget.lookup(&zero);
	if (!g || !xdmvpn_gcra(&g->tat_ns, xdmvpn_now(), XDMVPN_PTB_COST_NS, XDMVPN_PTB_BURST)) {
		xdmvpn_count_path(XDMVPN_PATH_PTB_HELD, 0);
		goto too_big;
	}
	/* [Ethernet][packet] -> [Ethernet][IPv6][ICMPv6][packet], 1,280 in all */
	if (bpf_skb_adjust_room(skb, XDMVPN_IPV6_HLEN + XDMVPN_ICMP6_HLEN, BPF_ADJ_ROOM_MAC, 0)) {
		xdmvpn_count_drop(XDMVPN_DROP_ADJUST_ROOM, bytes);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_change_tail(skb, end, 0) || bpf_skb_pull_data(skb, end)) {
		xdmvpn_count_drop(XDMVPN_DROP_ADJUST_ROOM, bytes);
		return TC_ACT_SHOT;
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + end > data_end) {
		xdmvpn_count_drop(XDMVPN_DROP_BOUNDS, bytes);
		return TC_ACT_SHOT;
	}
	eth = data;
	ip6 = data + ETH_HLEN;
	icmp = (void *)(ip6 + 1);
	xdmvpn_set_mac(eth->h_dest, XDMVPN_OVERLAY_MAC);
	xdmvpn_set_mac(eth->h_source, XDMVPN_OVERLAY_DP_MAC);
	eth->h_proto = xdmvpn_htons(ETH_P_IPV6);
	/* the quoted packet's source (its header starts after ours and ICMPv6's) */
	__builtin_memcpy(&ip6->daddr, (void *)(icmp + 1) + __builtin_offsetof(struct ipv6hdr, saddr),
			 sizeof(ip6->daddr));
	__builtin_memcpy(&ip6->saddr, me, sizeof(*me));
	*(__be32 *)ip6 = xdmvpn_htonl((__u32)XDMVPN_IPV6_VERSION << 28);
	ip6->payload_len = xdmvpn_htons(XDMVPN_IPV6_MIN_MTU - XDMVPN_IPV6_HLEN);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = XDMVPN_PTB_HOP_LIMIT;
	icmp->icmp6_type = XDMVPN_ICMP6_PTB;
	icmp->icmp6_code = 0;
	icmp->icmp6_cksum = 0;
	icmp->icmp6_dataun.un_data32[0] = xdmvpn_htonl(mtu > outer_len ? mtu - outer_len : 0);
	/* checksum: addresses, ICMPv6 message, then length and next header */
	{
		void *p = (void *)ip6 + __builtin_offsetof(struct ipv6hdr, saddr);
		const __u32 n = XDMVPN_IPV6_MIN_MTU - __builtin_offsetof(struct ipv6hdr, saddr);

		sum = (__u32)bpf_csum_diff(0, 0, p, XDMVPN_PTB_CSUM_CHUNK, 0);
		sum = (__u32)bpf_csum_diff(0, 0, p + XDMVPN_PTB_CSUM_CHUNK, XDMVPN_PTB_CSUM_CHUNK,
					   sum);
		sum = (__u32)bpf_csum_diff(0, 0, p + 2 * XDMVPN_PTB_CSUM_CHUNK,
					   n - 2 * XDMVPN_PTB_CSUM_CHUNK, sum);
	}
	sum += xdmvpn_htonl(XDMVPN_IPV6_MIN_MTU - XDMVPN_IPV6_HLEN);
	sum += xdmvpn_htonl(IPPROTO_ICMPV6);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	icmp->icmp6_cksum = (__u16)~sum;
	xdmvpn_count_drop(XDMVPN_DROP_TOO_BIG, bytes);
	if (bpf_redirect(XDMVPN_OVERLAY_IFINDEX, 0) != TC_ACT_REDIRECT) {
		xdmvpn_count_drop(XDMVPN_DROP_REDIRECT, bytes);
		return TC_ACT_SHOT;
	}
	xdmvpn_count_path(XDMVPN_PATH_PTB, XDMVPN_IPV6_MIN_MTU);
	return TC_ACT_REDIRECT;
too_big:
	xdmvpn_count_drop(XDMVPN_DROP_TOO_BIG, bytes);
	return TC_ACT_SHOT;
}

#if XDMVPN_IPSEC
/* Egress of the underlay: GRE to an IPsec peer leaves only as ESP.  Whatever
 * reaches here as plaintext GRE for one (a policy not installed yet or just
 * removed by charon, NHRP before the CHILD_SA) is dropped and counted. */
int xdmvpn_tc_guard(struct __sk_buff *skb)
{
	struct xdmvpn_cursor c = { .pos = (void *)(long)skb->data,
				   .end = (void *)(long)skb->data_end };
	struct ethhdr *eth;
	struct iphdr *ip;

	if (xdmvpn_parse_eth(&c, &eth) != xdmvpn_htons(ETH_P_IP) ||
	    xdmvpn_parse_ipv4(&c, &ip) < 0 || ip->protocol != XDMVPN_IPPROTO_GRE)
		return TC_ACT_OK;
	if (xdmvpn_ipsec_flags(ip->daddr) & XDMVPN_IPSEC_REQUIRED) {
		xdmvpn_count_drop(XDMVPN_DROP_PLAINTEXT_IPSEC, skb->len);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}
#endif

#if XDMVPN_IPSEC
/* Ingress of <tunnel>-rx, a collect_md GRE device (kernels with ESP only).
 * ESP in transport mode is decrypted by the kernel after XDP, and the GRE
 * inside goes to the kernel's GRE receive path, not through XDP again: that
 * device decapsulates it and hands it here, the outer source and the key as
 * tunnel metadata.  Our key's IPv4 goes on to dmvpn0 as XDP's decap sends it
 * (a hub's transit traffic emits the trigger there; the kernel then forwards
 * it back into the overlay, whose encap hands it to xfrm); NHRP was already
 * delivered to the controller's raw socket; anything else is not ours. */
int xdmvpn_tc_esp_rx(struct __sk_buff *skb)
{
	struct bpf_tunnel_key tk;
	struct xdmvpn_peer *peer;
	__u64 bytes = skb->len;
	struct ethhdr *eth;
	struct iphdr *ip;
	__be32 sender, src, dst;

	__builtin_memset(&tk, 0, sizeof(tk));
	if (bpf_skb_get_tunnel_key(skb, &tk, sizeof(tk), 0) ||
	    tk.tunnel_id != (__u32)XDMVPN_GRE_KEY) {
		xdmvpn_count_drop(XDMVPN_DROP_ESP_NOT_OURS, bytes);
		return TC_ACT_SHOT;
	}
	if (skb->protocol != xdmvpn_htons(ETH_P_IP)) {
		if (skb->protocol != xdmvpn_htons(XDMVPN_GRE_PROTO_NHRP))
			xdmvpn_count_drop(XDMVPN_DROP_INNER_PROTO, bytes);
		return TC_ACT_SHOT;     /* NHRP: the controller's raw socket has it */
	}
	sender = xdmvpn_htonl(tk.remote_ipv4);
	if (bpf_skb_change_head(skb, ETH_HLEN, 0)) {
		xdmvpn_count_drop(XDMVPN_DROP_CHANGE_HEAD, bytes);
		return TC_ACT_SHOT;
	}
	eth = (void *)(long)skb->data;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > (void *)(long)skb->data_end) {
		xdmvpn_count_drop(XDMVPN_DROP_INNER_MALFORMED, bytes);
		return TC_ACT_SHOT;
	}
	xdmvpn_set_mac(eth->h_dest, XDMVPN_OVERLAY_MAC);
	xdmvpn_set_mac(eth->h_source, XDMVPN_OVERLAY_DP_MAC);
	eth->h_proto = xdmvpn_htons(ETH_P_IP);
	src = ip->saddr;
	dst = ip->daddr;
	peer = xdmvpn_route(dst);
	if (XDMVPN_REDIRECT && peer && peer->nbma != XDMVPN_LOCAL_NBMA_BE &&
	    peer->nbma != sender) {
		__u32 n = skb->len - ETH_HLEN;
		struct xdmvpn_event *ev = xdmvpn_trigger_start(0, src, dst, xdmvpn_now(), &n);

		if (ev) {
			xdmvpn_in6_set4(&ev->nbma_src, sender);
			xdmvpn_in6_set4(&ev->inner_src, src);
			xdmvpn_in6_set4(&ev->inner_dst, dst);
			if (bpf_skb_load_bytes(skb, ETH_HLEN, ev->data, n))
				ev->len = 0;
			xdmvpn_events.ringbuf_submit(ev, 0);
			xdmvpn_count_path(XDMVPN_PATH_TRIGGER, 0);
		}
	}
	if (bpf_redirect(XDMVPN_OVERLAY_IFINDEX, 0) != TC_ACT_REDIRECT) {
		xdmvpn_count_drop(XDMVPN_DROP_REDIRECT, bytes);
		return TC_ACT_SHOT;
	}
	xdmvpn_count_path(XDMVPN_PATH_DECAP_ESP, bytes);
	return TC_ACT_REDIRECT;
}
#endif

/* The GRE sink: a collect_md GRE device (<tunnel>-rx, IPv6 <tunnel>-r6) that
 * exists only so that the kernel's ip_gre (ip6_gre), when loaded, has a tunnel
 * for what XDP passes up: NHRP, which the controller's raw socket has already
 * taken, and GRE that is no tunnel's.  Without it ip_gre answers each with ICMP
 * port unreachable to the sender.  Everything is dropped, uncounted: XDP
 * counted it (path), and the kernel would have discarded it too. */
int xdmvpn_tc_sink(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}

#ifdef XDMVPN_BENCH
/* Baseline for the encap cost: same harness, no work. */
int xdmvpn_bench_tc_base(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}
#endif
