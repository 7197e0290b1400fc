/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn tc programs (ingress of dmvpn0-dp, i.e. what the kernel sends out
 * of dmvpn0).
 *
 * xdmvpn_tc_encap: TCP MSS clamp on SYNs, then
 *   multicast/broadcast -> outer headers once, xdmvpn_tc_mcast clones it
 *   mapped destination   -> outer IPv4 + GRE + Ethernet, redirect to underlay
 *   no mapping           -> the mapping of the kernel route's gateway, else
 *                           the NHS when there is one, else drop (no event:
 *                           the hub's traffic indication starts a shortcut)
 *   IPsec peer           -> outer headers, then up the stack to xfrm (never a
 *                           redirect); no CHILD_SA: drop
 * xdmvpn_tc_guard (underlay egress, with XDMVPN_IPSEC): plaintext GRE to an
 *   IPsec peer is dropped.
 * xdmvpn_tc_esp_rx (ingress of <tunnel>-rx, with XDMVPN_IPSEC): GRE decrypted
 *   from ESP, onto the overlay.
 * xdmvpn_tc_mcast (tail call): one copy per multicast-set entry, a batch of
 *   XDMVPN_MCAST_BATCH per call, the position carried in skb->cb[0].
 * Every TC_ACT_SHOT that discards a packet counts one reason of enum xdmvpn_drop
 * (the original skb of a multicast, consumed after its copies, is not a drop).
 */
#include <uapi/linux/pkt_cls.h>
#include "xdmvpn_lib.h"

#define XDMVPN_OUTER_LEN (sizeof(struct iphdr) + XDMVPN_GRE_HLEN)

/* bcc 0.26 declares bpf_redirect_neigh without its plen argument. */
static long (*xdmvpn_redirect_neigh)(__u32 ifindex, struct bpf_redir_neigh *params,
				     int plen, __u64 flags) =
	(void *)BPF_FUNC_redirect_neigh;

/* 0 and *out = the TCP header for a SYN carrying options (not a fragment). */
static __always_inline int xdmvpn_syn(struct __sk_buff *skb, struct tcphdr **out)
{
	struct xdmvpn_cursor c = { .pos = (void *)(long)skb->data,
				   .end = (void *)(long)skb->data_end };
	struct ethhdr *eth;
	struct iphdr *ip;
	struct tcphdr *tcp;

	if (xdmvpn_parse_eth(&c, &eth) != xdmvpn_htons(ETH_P_IP) ||
	    xdmvpn_parse_ipv4(&c, &ip) < 0 || ip->protocol != IPPROTO_TCP ||
	    (ip->frag_off & xdmvpn_htons(XDMVPN_IP_MF | XDMVPN_IP_OFFSET)))
		return -1;
	if (xdmvpn_parse_tcp(&c, &tcp) || !tcp->syn ||
	    tcp->doff * XDMVPN_HDR_WORD <= sizeof(*tcp))
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
	struct tcphdr *tcp;
	__u32 st = skb->cb[XDMVPN_CB_MSS];
	__u32 i = st & XDMVPN_CB_MSS_OFF_MASK, n = st >> XDMVPN_CB_MSS_SEEN_SHIFT;
	__u8 *p;

	if (xdmvpn_syn(skb, &tcp) || n >= XDMVPN_MSS_MAX_OPTIONS ||
	    i >= tcp->doff * XDMVPN_HDR_WORD - sizeof(*tcp))
		goto done;
	p = (__u8 *)(tcp + 1) + i;
	if ((void *)(p + XDMVPN_TCPOLEN_MSS) > data_end || p[0] == XDMVPN_TCPOPT_EOL)
		goto done;
	if (p[0] == XDMVPN_TCPOPT_MSS && p[1] == XDMVPN_TCPOLEN_MSS) {
		__be16 *value = (__be16 *)(p + XDMVPN_TCPOLEN_MIN);
		__u16 mss = xdmvpn_ntohs(*value);
		__u32 tcp_off = (void *)tcp - data;
		__u32 off = tcp_off + sizeof(*tcp) + i + XDMVPN_TCPOLEN_MIN;
		__u32 csum_off = tcp_off + __builtin_offsetof(struct tcphdr, check);
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
	xdmvpn_progs.call(skb, XDMVPN_PROG_BUILD);
	xdmvpn_tail_failed(skb->len);
	return TC_ACT_SHOT;
}

/* Make room after Ethernet and write outer IPv4 (destination left 0) + GRE
 * in front of the inner packet described by tos, frag and ttl. */
static __always_inline int xdmvpn_push_outer(struct __sk_buff *skb, __u8 tos,
					     __u16 inner_frag, __u8 inner_ttl)
{
	__u16 tot_len = skb->len - ETH_HLEN + XDMVPN_OUTER_LEN;
	void *data, *data_end;
	struct iphdr *ip;
	__be16 id = 0;

	if (bpf_skb_adjust_room(skb, XDMVPN_OUTER_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
				BPF_F_ADJ_ROOM_ENCAP_L4_GRE))
		return -XDMVPN_DROP_ADJUST_ROOM;
	/* adjust_room moved the data: derive the pointers again. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	if ((void *)ip + XDMVPN_OUTER_LEN > data_end)
		return -XDMVPN_DROP_BOUNDS;
	if (!(XDMVPN_DF == XDMVPN_DF_SET ||
	      (XDMVPN_DF == XDMVPN_DF_INHERIT && (inner_frag & XDMVPN_IP_DF))))
		id = (__be16)bpf_get_prandom_u32();
	xdmvpn_outer_ipv4(ip, tos, inner_frag, tot_len, id, 0, inner_ttl);
	xdmvpn_gre_header(ip + 1);
	return 0;
}

/* Write the outer destination (and header checksum) of the encapsulated skb. */
static __always_inline int xdmvpn_set_dst(struct __sk_buff *skb, __be32 nbma)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;

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

/* Send a copy of the encapsulated skb to nbma (multicast: fib lookup per copy;
 * an IPsec peer's copy goes back into dmvpn0-dp, see xdmvpn_tc_encap). */
static __always_inline int xdmvpn_send_copy(struct __sk_buff *skb, __be32 nbma)
{
	struct bpf_fib_lookup fib;
	int rc;

	rc = xdmvpn_set_dst(skb, nbma);
	if (rc < 0)
		return rc;
	rc = xdmvpn_ipsec_route(nbma);
	if (rc < 0)
		return rc;
	if (rc)
		return bpf_clone_redirect(skb, XDMVPN_OVERLAY_IFINDEX, BPF_F_INGRESS) ?
			-XDMVPN_DROP_CLONE : 0;
	rc = xdmvpn_fib(skb, &fib, nbma, 0, 0, BPF_FIB_LOOKUP_OUTPUT);
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

/* Send the encapsulated skb to nbma, the next hop from the mapping's cache
 * entry nh (NULL: no slot; refilled from the fib when stale). */
static __always_inline int xdmvpn_send(struct __sk_buff *skb, __be32 nbma,
				       struct xdmvpn_nh *nh, __u64 now)
{
	struct bpf_fib_lookup fib;
	struct xdmvpn_nh tmp;
	int rc;

	rc = xdmvpn_set_dst(skb, nbma);
	if (rc < 0)
		return rc;
	if (!nh || nh->nbma != nbma || now - nh->stamp_ns >= XDMVPN_NH_CACHE_NS) {
		if (!nh)
			nh = &tmp;
		rc = xdmvpn_nh_fill(skb, &fib, nh, nbma, now, 1);
		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
			struct bpf_redir_neigh rn = { .nh_family = AF_INET,
						      .ipv4_nh = fib.ipv4_dst };

			xdmvpn_count_path(XDMVPN_PATH_ENCAP_NEIGH, 0);
			return xdmvpn_redirected(xdmvpn_redirect_neigh(fib.ifindex, &rn,
								       sizeof(rn), 0));
		}
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return -XDMVPN_DROP_TOO_BIG;
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return -XDMVPN_DROP_NO_ROUTE;
	} else if (skb->len - ETH_HLEN > nh->mtu) {
		return -XDMVPN_DROP_TOO_BIG;
	}
	rc = xdmvpn_set_l2(skb, nh->dmac, nh->smac);
	if (rc < 0)
		return rc;
	return xdmvpn_redirected(bpf_redirect(nh->ifindex, 0));
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

/* Classify the overlay packet and hand it to xdmvpn_tc_build through skb->cb. */
int xdmvpn_tc_encap(struct __sk_buff *skb)
{
	struct xdmvpn_cursor c;
	struct xdmvpn_peer *peer;
	__u32 path = XDMVPN_PATH_ENCAP;
	__u64 bytes = skb->len;
	struct ethhdr *eth;
	struct iphdr *ip;
	__be32 src, dst;

	c.pos = (void *)(long)skb->data;
	c.end = (void *)(long)skb->data_end;
	if (xdmvpn_parse_eth(&c, &eth) != xdmvpn_htons(ETH_P_IP) ||
	    xdmvpn_parse_ipv4(&c, &ip) < 0) {
		xdmvpn_count_drop(XDMVPN_DROP_OVERLAY_NOT_IPV4, bytes);
		return TC_ACT_SHOT;
	}
	src = ip->saddr;
	dst = ip->daddr;
#if XDMVPN_IPSEC
	/* A multicast copy for an IPsec peer, cloned back in by xdmvpn_tc_mcast. */
	if (ip->protocol == IPPROTO_GRE && src == XDMVPN_LOCAL_NBMA_BE) {
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
	} else {
		peer = xdmvpn_route(dst);
		if (!peer) {
			peer = xdmvpn_route_kernel(skb, src, dst);
			path = XDMVPN_PATH_ENCAP_ROUTE;
		}
		if (!peer) {
			__u32 i = 0;

			peer = xdmvpn_nhs.lookup(&i);
			if (!peer || !peer->nbma) {
				xdmvpn_count_drop(XDMVPN_DROP_NO_MAPPING, bytes);
				return TC_ACT_SHOT;
			}
			path = XDMVPN_PATH_ENCAP_NHS;
		}
		skb->cb[XDMVPN_CB_NBMA] = peer->nbma;
		skb->cb[XDMVPN_CB_STATS] = peer->stats_idx;
		skb->cb[XDMVPN_CB_PATH] = path;
		struct tcphdr *tcp;

		if (XDMVPN_ADJUST_MSS && !xdmvpn_syn(skb, &tcp)) {
			skb->cb[XDMVPN_CB_MSS] = 0;
			xdmvpn_progs.call(skb, XDMVPN_PROG_MSS);
		}
	}
	xdmvpn_progs.call(skb, XDMVPN_PROG_BUILD);
	xdmvpn_tail_failed(bytes);
	return TC_ACT_SHOT;
}

/* Outer headers for the packet xdmvpn_tc_encap classified; unicast: next hop
 * from the cache, send; multicast: on to xdmvpn_tc_mcast. */
int xdmvpn_tc_build(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 path = skb->cb[XDMVPN_CB_PATH];
	__u32 idx = skb->cb[XDMVPN_CB_STATS];
	__be32 nbma = skb->cb[XDMVPN_CB_NBMA];
	struct iphdr *ip = data + ETH_HLEN;
	__u64 bytes = skb->len, now;
	struct xdmvpn_nh *nh;
	int rc;

	if ((void *)(ip + 1) > data_end) {
		xdmvpn_count_drop(XDMVPN_DROP_BOUNDS, bytes);
		return TC_ACT_SHOT;
	}
	rc = xdmvpn_push_outer(skb, ip->tos, xdmvpn_ntohs(ip->frag_off), ip->ttl);
	if (rc < 0) {
		xdmvpn_count_drop(-rc, bytes);
		return TC_ACT_SHOT;
	}
	if (path == XDMVPN_PATH_MCAST) {
		skb->cb[XDMVPN_CB_NBMA] = 0;
		xdmvpn_progs.call(skb, XDMVPN_PROG_MCAST);
		xdmvpn_tail_failed(bytes);
		return TC_ACT_SHOT;
	}
	now = xdmvpn_now();
	{
		struct xdmvpn_peer p = { .stats_idx = idx };

		xdmvpn_count_peer(&p, bytes, now);
	}
	rc = xdmvpn_ipsec_route(nbma);
	if (rc == 0) {
		nh = xdmvpn_nh_cache.lookup(&idx);
		rc = xdmvpn_send(skb, nbma, nh, now);
		if (rc >= 0)
			xdmvpn_count_path(path, bytes);
	} else if (rc > 0) {
		rc = xdmvpn_set_dst(skb, nbma);
		if (rc == 0)
			rc = xdmvpn_to_stack(skb);
	}
	if (rc < 0) {
		xdmvpn_count_drop(-rc, bytes);
		return TC_ACT_SHOT;
	}
	return rc;
}

int xdmvpn_tc_mcast(struct __sk_buff *skb)
{
	__u32 base = skb->cb[XDMVPN_CB_NBMA];
	__u64 bytes = skb->len - XDMVPN_OUTER_LEN;

#pragma unroll
	for (int j = 0; j < XDMVPN_MCAST_BATCH; j++) {
		__u32 i = base + j;
		__be32 *nbma;
		int rc;

		if (i >= XDMVPN_MCAST_MAX)
			return TC_ACT_SHOT;
		nbma = xdmvpn_mcast.lookup(&i);
		if (!nbma || !*nbma)
			return TC_ACT_SHOT;
		rc = xdmvpn_send_copy(skb, *nbma);
		if (rc < 0)
			xdmvpn_count_drop(-rc, bytes);
		else
			xdmvpn_count_path(XDMVPN_PATH_MCAST, bytes);
	}
	skb->cb[XDMVPN_CB_NBMA] = base + XDMVPN_MCAST_BATCH;
	xdmvpn_progs.call(skb, XDMVPN_PROG_MCAST);
	xdmvpn_tail_failed(bytes);
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
	    xdmvpn_parse_ipv4(&c, &ip) < 0 || ip->protocol != IPPROTO_GRE)
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
		xdmvpn_count_drop(XDMVPN_DROP_INNER_PROTO, bytes);
		return TC_ACT_SHOT;
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
		struct xdmvpn_event *ev = xdmvpn_trigger_start(sender, src, dst,
							      xdmvpn_now(), &n);

		if (ev) {
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

#ifdef XDMVPN_BENCH
/* Baseline for the encap cost: same harness, no work. */
int xdmvpn_bench_tc_base(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}
#endif
