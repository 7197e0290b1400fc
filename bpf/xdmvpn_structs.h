/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn structures and enums.
 *
 * Everything above "BPF-only" is read or written by the controller and
 * mirrored by ctypes classes and IntEnums in ctl/xdmvpn/dataplane/abi.py;
 * tests/dataplane/test_abi.py checks every size, offset and value.
 */
#ifndef XDMVPN_STRUCTS_H
#define XDMVPN_STRUCTS_H

#include <uapi/linux/bpf.h>
#include "xdmvpn_consts.h"

/* ---- counters ----------------------------------------------------------- */
/* Packets and bytes per path, index of xdmvpn_paths. */
enum xdmvpn_path {
	XDMVPN_PATH_DECAP = 0,      /* GRE for us, inner delivered on the overlay */
	XDMVPN_PATH_HAIRPIN,        /* GRE re-encapsulated toward a peer (XDP_TX) */
	XDMVPN_PATH_NHRP,           /* NHRP passed to the controller (known or not) */
	XDMVPN_PATH_ENCAP,          /* overlay packet sent to a mapped peer */
	XDMVPN_PATH_ENCAP_NHS,      /* overlay packet without mapping, sent to the NHS */
	XDMVPN_PATH_MCAST,          /* one multicast copy sent */
	XDMVPN_PATH_PASS_NOT_IPV4,  /* underlay frame neither IPv4 nor IPv6 (ARP, VLAN), or
				     * IP of a family we have no NBMA address of */
	XDMVPN_PATH_PASS_NOT_GRE,   /* IPv4/IPv6 but not GRE to our NBMA address */
	XDMVPN_PATH_PASS_FRAGMENT,  /* outer fragment: left to the kernel */
	XDMVPN_PATH_PASS_GRE_OTHER, /* GRE version != 0 or routing bits: not ours */
	XDMVPN_PATH_PASS_WRONG_KEY, /* GRE with another (or no) key */
	XDMVPN_PATH_HAIRPIN_SLOW,   /* hairpin candidate decapsulated instead (no neighbour, IHL>5, TTL) */
	XDMVPN_PATH_TRIGGER,        /* traffic-indication trigger emitted */
	XDMVPN_PATH_TRIGGER_HELD,   /* trigger suppressed by the rate limit */
	XDMVPN_PATH_EVENT_LOST,     /* ring buffer full */
	XDMVPN_PATH_MSS_CLAMPED,    /* SYN whose MSS was lowered */
	XDMVPN_PATH_ENCAP_NEIGH,    /* encap through bpf_redirect_neigh (no neighbour yet) */
	XDMVPN_PATH_NH_FILL,        /* next-hop cache (re)filled from bpf_fib_lookup */
	XDMVPN_PATH_ENCAP_ROUTE,    /* encap: mapping of the gateway of the kernel's route */
	XDMVPN_PATH_ENCAP_XFRM,     /* encap to an IPsec peer: handed to the stack for xfrm */
	XDMVPN_PATH_HAIRPIN_XFRM,   /* hairpin toward an IPsec peer: decapsulated for the kernel */
	XDMVPN_PATH_DECAP_ESP,      /* GRE the kernel decrypted from ESP, delivered on the overlay */
	XDMVPN_PATH_NHRP_UNKNOWN,   /* of XDMVPN_PATH_NHRP: from an unknown source (global budget) */
	XDMVPN_PATH_PASS_IPV6_EXT,  /* outer IPv6 whose extension headers we do not walk (longer
				     * chain, routing header with segments left): the kernel's */
	XDMVPN_PATH_PTB,            /* ICMPv6 Packet Too Big sent back into the overlay */
	XDMVPN_PATH_PTB_HELD,       /* Packet Too Big suppressed by its budget (packet dropped) */
	XDMVPN_PATH_MAX
};

/* Drops per reason, index of xdmvpn_drops.  Every XDP_DROP and TC_ACT_SHOT
 * that discards a packet counts exactly one of these. */
enum xdmvpn_drop {
	/* what the packet is */
	XDMVPN_DROP_GRE_TRUNCATED = 0, /* GRE to us cut short */
	XDMVPN_DROP_INNER_MALFORMED,   /* inner IPv4 truncated or bad header */
	XDMVPN_DROP_INNER_PROTO,       /* GRE protocol neither IPv4 nor NHRP */
	XDMVPN_DROP_OVERLAY_NOT_IPV4,  /* encap: overlay frame not IPv4 */
	XDMVPN_DROP_LOOP,              /* inner destination maps back to the sender */
	XDMVPN_DROP_TOO_BIG,           /* outer packet above the underlay MTU */
	/* policy */
	XDMVPN_DROP_NHRP_RATE,         /* NHRP from a known source over its token bucket */
	XDMVPN_DROP_NHRP_UNKNOWN_RATE, /* NHRP from an unknown source over its token bucket */
	XDMVPN_DROP_NHRP_UNKNOWN_BUDGET, /* NHRP from an unknown source over the global budget */
	XDMVPN_DROP_PLAINTEXT_IPSEC,   /* plaintext GRE from (XDP) or to (tc egress) an IPsec peer */
	XDMVPN_DROP_IPSEC_NO_SA,       /* encap to an IPsec peer without an installed CHILD_SA */
	XDMVPN_DROP_ESP_NOT_OURS,      /* ESP receive: no tunnel metadata or another key */
	/* where it would go */
	XDMVPN_DROP_NO_MAPPING,        /* encap: no mapping and no NHS */
	XDMVPN_DROP_NO_ROUTE,          /* bpf_fib_lookup found no underlay route */
	XDMVPN_DROP_NO_NEIGH,          /* multicast copy to a peer without a neighbour entry */
	XDMVPN_DROP_NH_SLOT,           /* hairpin: mapping's stats_idx outside the next-hop cache */
	/* the programs' own plumbing */
	XDMVPN_DROP_TAIL_CALL,         /* tail call failed (program slot empty) */
	XDMVPN_DROP_SCRATCH,           /* per-CPU scratch lookup failed (hand-over between XDP programs) */
	XDMVPN_DROP_BOUNDS,            /* a header to write or a hand-over offset past the packet */
	XDMVPN_DROP_ADJUST_HEAD,       /* bpf_xdp_adjust_head (decap strip) failed */
	XDMVPN_DROP_ADJUST_ROOM,       /* bpf_skb_adjust_room (encap push) failed */
	XDMVPN_DROP_CHANGE_HEAD,       /* bpf_skb_change_head (ESP receive: Ethernet) failed */
	XDMVPN_DROP_CHANGE_TYPE,       /* bpf_skb_change_type (hand-over to xfrm) failed */
	XDMVPN_DROP_CLONE,             /* bpf_clone_redirect (multicast copy) failed */
	XDMVPN_DROP_REDIRECT,          /* bpf_redirect/bpf_redirect_neigh refused (no redirect verdict) */
	/* IPv6 (appended: the values above are unchanged) */
	XDMVPN_DROP_OUTER_MALFORMED,   /* outer IPv6 to us: payload length beyond the frame or 0,
					* extension header cut short */
	XDMVPN_DROP_MCAST_SCOPE,       /* overlay IPv6 multicast of scope 0 or 1 (never leaves) */
	XDMVPN_DROP_MAX
};

/* Event types of struct xdmvpn_event. */
enum xdmvpn_event_type {
	XDMVPN_EV_TRIGGER = 1, /* hub hairpinned (src, dst): send a traffic indication */
	XDMVPN_EV_MAX
};

/* A packets/bytes pair. */
struct xdmvpn_count {
	__u64 packets;
	__u64 bytes;
};

/* ---- forwarding state ---------------------------------------------------- */
/* An IPv6 address: four words as they lie in memory (network order). */
struct xdmvpn_in6 {
	__be32 w[4];
};

/* Where an overlay destination goes: value of xdmvpn_peers, xdmvpn_prefixes,
 * their IPv6 twins and xdmvpn_nhs.  An IPv6 NBMA address does not fit: it is
 * xdmvpn_nbma6[stats_idx] (the mapping's own slot), and nbma holds the xor of
 * its words (non-zero: the controller makes it so) for quick compares. */
struct xdmvpn_peer {
	__be32 nbma;      /* underlay address of the peer, network order (IPv6: folded) */
	__u32 stats_idx;  /* slot in xdmvpn_peer_stats, chosen by the controller */
	__u32 flags;      /* XDMVPN_PEER_NBMA6 */
};

/* Key of xdmvpn_prefixes (LPM trie). */
struct xdmvpn_lpm_key {
	__u32 prefixlen;  /* 0..32 */
	__be32 addr;      /* network order */
};

/* Key of xdmvpn_prefixes6 (LPM trie). */
struct xdmvpn_lpm6_key {
	__u32 prefixlen;  /* 0..128 */
	struct xdmvpn_in6 addr;
};

/* Per-mapping statistics (per CPU; the controller sums). */
struct xdmvpn_peer_stats {
	__u64 packets;
	__u64 bytes;
	__u64 last_used_ns; /* bpf_ktime_get_coarse_ns() of the last packet */
};

/* One rate-limit slot: direct-mapped by a hash of the flow. */
struct xdmvpn_rl_slot {
	__u64 stamp_ns;   /* coarse time of the last event from this slot */
	__be32 src;       /* pair that emitted it (for inspection; IPv6: folded) */
	__be32 dst;
};

/* Cached underlay next hop of one mapping (per CPU, indexed like the
 * statistics by xdmvpn_peer.stats_idx).  Valid while nbma matches the
 * mapping's and stamp_ns is younger than XDMVPN_NH_CACHE_NS. */
struct xdmvpn_nh {
	__u64 stamp_ns;   /* coarse time of the fill (empty: nbma 0) */
	__be32 nbma;      /* the NBMA address it was filled for (IPv6: folded) */
	__u32 ifindex;    /* egress interface */
	__u16 mtu;        /* of the route: outer IP packet bytes */
	__u8 dmac[6];
	__u8 smac[6];
	__u16 pad;
};

/* Hand-over between the XDP programs of one packet (per CPU: a packet's
 * tail calls run on one CPU without interruption). */
struct xdmvpn_scratch {
	__u64 bytes;      /* frame length at entry */
	__u32 strip;      /* outer IP (+ extension headers) + GRE bytes after Ethernet */
	__be32 nbma;      /* hairpin: NBMA of the destination's peer (IPv6: folded) */
	__u32 stats_idx;  /* hairpin: the mapping's slot */
	__u32 flags;      /* XDMVPN_F_* */
	struct xdmvpn_in6 sender; /* outer source: IPv4 in w[0] (others 0), or IPv6 */
	struct xdmvpn_in6 src;    /* hairpin: the inner pair (IPv4 in w[0]) */
	struct xdmvpn_in6 dst;
	__u8 tos;         /* hairpin: inner TOS / traffic class, */
	__u8 ttl;         /* TTL / hop limit (before the hop), */
	__u16 frag;       /* IPv4 frag_off (host order; IPv6: DF) */
	__u32 pad;
};

/* An NHRP admission budget: per source (LRU values) and for all unknown
 * sources together (xdmvpn_nhrp_budget).  Generic cell rate algorithm: the
 * state is one word, the theoretical arrival time of the next packet; a
 * packet is admitted while that is at most (burst - 1) * cost ahead of now. */
struct xdmvpn_bucket {
	__u64 tat_ns;     /* coarse time; 0: full */
};

/* Event to the controller. */
struct xdmvpn_event {
	__u32 type;       /* enum xdmvpn_event_type */
	__u32 flags;      /* XDMVPN_F_OUTER6: nbma_src is IPv6; XDMVPN_F_INNER6: the pair is */
	struct xdmvpn_in6 nbma_src;  /* sender NBMA (IPv4: w[0]) */
	struct xdmvpn_in6 inner_src; /* (IPv4: w[0]) */
	struct xdmvpn_in6 inner_dst;
	__u32 len;        /* valid bytes in data */
	__u32 pad;
	__u8 data[XDMVPN_EVENT_DATA]; /* start of the inner packet */
};

/* Benchmark build: the template frame every live-frames run starts from,
 * and the generator's pacing. */
struct xdmvpn_bench_tmpl {
	__u32 len;
	__u8 data[XDMVPN_BENCH_TEMPLATE];
};

struct xdmvpn_bench_pace {
	__u64 interval_ns;
	__u64 next_ns;
	__u64 sent;
};

/* ---- BPF-only: parse state (xdmvpn_parse.h), not seen by Python ---------- */
struct xdmvpn_cursor {
	void *pos; /* first byte not yet parsed */
	void *end; /* one past the last byte of the linear packet data */
};

/* TCP base header (RFC 9293), without bit fields: the data offset is the top
 * four bits of doff_res, SYN a bit of flags. */
struct xdmvpn_tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res;  /* data offset (32-bit words) << 4 | reserved */
	__u8 flags;     /* CWR ECE URG ACK PSH RST SYN FIN */
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

#define xdmvpn_tcp_doff(t) ((t)->doff_res >> 4)
#define XDMVPN_TCP_SYN 0x02

/* GRE base header: flags+version word, protocol type. */
struct xdmvpn_grehdr {
	__be16 flags;
	__be16 proto;
};

/* What xdmvpn_parse_gre found. */
struct xdmvpn_gre_info {
	__u16 flags;  /* host order, version bits included */
	__u16 proto;  /* host order protocol type (0x0800 IPv4, 0x2001 NHRP) */
	__u32 key;    /* host order key, valid when flags has XDMVPN_GRE_F_KEY */
	__u32 hlen;   /* bytes of GRE header including optional words */
};

/* Result codes of xdmvpn_parse_gre. */
enum xdmvpn_gre_parse {
	XDMVPN_GRE_OK = 0,
	XDMVPN_GRE_TRUNCATED = 1,   /* header or one of its optional words is cut */
	XDMVPN_GRE_UNSUPPORTED = 2, /* version != 0, routing or recursion bits */
};

#endif /* XDMVPN_STRUCTS_H */
