/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn tc programs (ingress of dmvpn0-dp, i.e. what the kernel sends out
 * of dmvpn0).
 *
 * xdmvpn_tc_encap: TCP MSS clamp on SYNs, then
 *   multicast/broadcast -> outer headers once, xdmvpn_tc_mcast clones it
 *   mapped destination   -> outer IPv4 + GRE + Ethernet, redirect to underlay
 *   no mapping           -> to the NHS when there is one, else drop; and a
 *                           rate-limited miss event for the controller
 * xdmvpn_tc_mcast (tail call): one copy per multicast-set entry, a batch of
 *   XDMVPN_MCAST_BATCH per call, the position carried in skb->cb[0].
 */
#include <uapi/linux/pkt_cls.h>
#include "xdmvpn_lib.h"

#define XDMVPN_OUTER_LEN (sizeof(struct iphdr) + XDMVPN_GRE_HLEN)

/* bcc 0.26 declares bpf_redirect_neigh without its plen argument. */
static long (*xdmvpn_redirect_neigh)(__u32 ifindex, struct bpf_redir_neigh *params,
				     int plen, __u64 flags) =
	(void *)BPF_FUNC_redirect_neigh;

/* Lower the MSS option of a TCP SYN to XDMVPN_ADJUST_MSS. */
static __always_inline void xdmvpn_clamp_mss(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct xdmvpn_cursor c = { .pos = data, .end = data_end };
	struct ethhdr *eth;
	struct iphdr *ip;
	struct tcphdr *tcp;
	__u32 optlen, i = 0;
	__u8 *opt;
	int ihl;

	if (xdmvpn_parse_eth(&c, &eth) != xdmvpn_htons(ETH_P_IP))
		return;
	ihl = xdmvpn_parse_ipv4(&c, &ip);
	if (ihl < 0 || ip->protocol != IPPROTO_TCP ||
	    (ip->frag_off & xdmvpn_htons(XDMVPN_IP_MF | XDMVPN_IP_OFFSET)))
		return;
	if (xdmvpn_parse_tcp(&c, &tcp) || !tcp->syn || tcp->doff <= 5)
		return;
	optlen = tcp->doff * 4 - sizeof(*tcp);
	opt = (__u8 *)(tcp + 1);
#pragma unroll
	for (int n = 0; n < 8; n++) {
		__u8 *p;

		if (i >= optlen)
			return;
		p = opt + i;
		if ((void *)(p + 4) > data_end)
			return;
		if (p[0] == 0)
			return;
		if (p[0] == 1) {
			i++;
			continue;
		}
		if (p[0] == 2 && p[1] == 4) {
			__u16 mss = (p[2] << 8) | p[3];
			__u32 off = (void *)(p + 2) - data;
			__u32 csum_off = (void *)tcp - data + 16;
			__be16 old_v = *(__be16 *)(p + 2);
			__be16 new_v = xdmvpn_htons(XDMVPN_ADJUST_MSS);

			if (mss <= XDMVPN_ADJUST_MSS)
				return;
			*(__be16 *)(p + 2) = new_v;
			if (off & 1) {
				/* Odd offset: the word sits byte-swapped in the sum. */
				old_v = __builtin_bswap16(old_v);
				new_v = __builtin_bswap16(new_v);
			}
			bpf_l4_csum_replace(skb, csum_off, old_v, new_v, 2);
			xdmvpn_count_path(XDMVPN_PATH_MSS_CLAMPED, 0);
			return;
		}
		if (p[1] < 2)
			return;
		i += p[1];
	}
}

/* Miss event: the inner packet's pair and start. */
static __always_inline void xdmvpn_miss(struct __sk_buff *skb, __be32 src, __be32 dst)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	struct xdmvpn_event *ev;
	__u32 n = skb->len - ETH_HLEN;

	if (!xdmvpn_rl_allow(0, dst, now, XDMVPN_MISS_INTERVAL_NS))
		return;
	ev = xdmvpn_event_start(XDMVPN_EV_MISS, 0, src, dst, &n);
	if (!ev)
		return;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, ev->data, n))
		ev->len = 0;
	xdmvpn_events.ringbuf_submit(ev, 0);
	xdmvpn_count_path(XDMVPN_PATH_MISS, 0);
}

/* Make room after Ethernet and write outer IPv4 (destination left 0) + GRE. */
static __always_inline int xdmvpn_push_outer(struct __sk_buff *skb, __u8 tos,
					     __u16 inner_frag)
{
	__u16 tot_len = skb->len - ETH_HLEN + XDMVPN_OUTER_LEN;
	void *data, *data_end;
	struct iphdr *ip;
	__be16 id = 0;

	if (bpf_skb_adjust_room(skb, XDMVPN_OUTER_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
				BPF_F_ADJ_ROOM_ENCAP_L4_GRE))
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN;
	if ((void *)ip + XDMVPN_OUTER_LEN > data_end)
		return -1;
	if (!(XDMVPN_DF == 1 || (XDMVPN_DF == 2 && (inner_frag & XDMVPN_IP_DF))))
		id = (__be16)bpf_get_prandom_u32();
	xdmvpn_outer_ipv4(ip, tos, inner_frag, tot_len, id, 0);
	xdmvpn_gre_header(ip + 1);
	return 0;
}

/* Address the encapsulated skb to nbma and send it (clone: a copy). */
static __always_inline int xdmvpn_send(struct __sk_buff *skb, __be32 nbma, int clone)
{
	struct bpf_fib_lookup fib;
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	int rc;

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -XDMVPN_DROP_HELPER;
	ip->daddr = nbma;
	ip->check = 0;
	ip->check = xdmvpn_ipv4_csum(ip);
	rc = xdmvpn_fib(skb, &fib, nbma, ip->tos, 0, BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET,
					      .ipv4_nh = fib.ipv4_dst };

		if (clone)
			return -XDMVPN_DROP_NO_NEIGH;
		xdmvpn_count_path(XDMVPN_PATH_ENCAP_NEIGH, 0);
		return xdmvpn_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return -XDMVPN_DROP_TOO_BIG;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return -XDMVPN_DROP_NO_ROUTE;
	/* bpf_fib_lookup does not move packet data: eth is still valid. */
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (clone)
		return bpf_clone_redirect(skb, fib.ifindex, 0) ? -XDMVPN_DROP_HELPER : 0;
	return bpf_redirect(fib.ifindex, 0);
}

static __always_inline int xdmvpn_encap(struct __sk_buff *skb)
{
	struct xdmvpn_cursor c;
	struct xdmvpn_peer *peer;
	__u32 path = XDMVPN_PATH_ENCAP;
	__u64 bytes = skb->len;
	struct ethhdr *eth;
	struct iphdr *ip;
	__be32 src, dst;
	__u16 frag;
	__u8 tos;
	int rc;

	if (XDMVPN_ADJUST_MSS)
		xdmvpn_clamp_mss(skb);
	c.pos = (void *)(long)skb->data;
	c.end = (void *)(long)skb->data_end;
	if (xdmvpn_parse_eth(&c, &eth) != xdmvpn_htons(ETH_P_IP) ||
	    xdmvpn_parse_ipv4(&c, &ip) < 0) {
		xdmvpn_count_drop(XDMVPN_DROP_OVERLAY_NOT_IPV4, bytes);
		return TC_ACT_SHOT;
	}
	src = ip->saddr;
	dst = ip->daddr;
	tos = ip->tos;
	frag = xdmvpn_ntohs(ip->frag_off);

	if ((dst & xdmvpn_htonl(0xf0000000)) == xdmvpn_htonl(0xe0000000) ||
	    dst == 0xffffffff) {
		if (xdmvpn_push_outer(skb, tos, frag)) {
			xdmvpn_count_drop(XDMVPN_DROP_HELPER, bytes);
			return TC_ACT_SHOT;
		}
		skb->cb[0] = 0;
		xdmvpn_progs.call(skb, XDMVPN_PROG_MCAST);
		xdmvpn_count_drop(XDMVPN_DROP_HELPER, bytes);
		return TC_ACT_SHOT;
	}

	peer = xdmvpn_route(dst);
	if (!peer) {
		__u32 i = 0;

		xdmvpn_miss(skb, src, dst);
		peer = xdmvpn_nhs.lookup(&i);
		if (!peer || !peer->nbma) {
			xdmvpn_count_drop(XDMVPN_DROP_NO_MAPPING, bytes);
			return TC_ACT_SHOT;
		}
		path = XDMVPN_PATH_ENCAP_NHS;
	}
	xdmvpn_count_peer(peer, bytes, bpf_ktime_get_coarse_ns());
	if (xdmvpn_push_outer(skb, tos, frag)) {
		xdmvpn_count_drop(XDMVPN_DROP_HELPER, bytes);
		return TC_ACT_SHOT;
	}
	rc = xdmvpn_send(skb, peer->nbma, 0);
	if (rc < 0) {
		xdmvpn_count_drop(-rc, bytes);
		return TC_ACT_SHOT;
	}
	xdmvpn_count_path(path, bytes);
	return rc;
}

int xdmvpn_tc_encap(struct __sk_buff *skb)
{
	return xdmvpn_encap(skb);
}

int xdmvpn_tc_mcast(struct __sk_buff *skb)
{
	__u32 base = skb->cb[0];
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
		rc = xdmvpn_send(skb, *nbma, 1);
		if (rc < 0)
			xdmvpn_count_drop(-rc, bytes);
		else
			xdmvpn_count_path(XDMVPN_PATH_MCAST, bytes);
	}
	skb->cb[0] = base + XDMVPN_MCAST_BATCH;
	xdmvpn_progs.call(skb, XDMVPN_PROG_MCAST);
	return TC_ACT_SHOT;
}

#ifdef XDMVPN_BENCH
/* Baseline for the encap cost: same harness, no work. */
int xdmvpn_bench_tc_base(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}
#endif
