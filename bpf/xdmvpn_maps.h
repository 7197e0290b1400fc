/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn shared constants, structures and every map.
 *
 * The layout of each structure here is mirrored by ctypes classes in
 * ctl/xdmvpn/dataplane/maps.py: change both together.
 *
 * Compile-time configuration comes as -D flags from
 * ctl/xdmvpn/dataplane/build.py; the defaults below only make the file
 * self-contained for a quick compile check.
 */
#ifndef XDMVPN_MAPS_H
#define XDMVPN_MAPS_H

#include <uapi/linux/bpf.h>

/* ---- configuration (-D from build.py) ---------------------------------- */
#ifndef XDMVPN_HAS_KEY
#define XDMVPN_HAS_KEY 0          /* 1: GRE key XDMVPN_GRE_KEY required/sent */
#endif
#ifndef XDMVPN_GRE_KEY
#define XDMVPN_GRE_KEY 0          /* host order */
#endif
#ifndef XDMVPN_LOCAL_NBMA
#define XDMVPN_LOCAL_NBMA 0       /* own underlay IPv4, host order */
#endif
#ifndef XDMVPN_UNDERLAY_IFINDEX
#define XDMVPN_UNDERLAY_IFINDEX 0 /* interface carrying the NBMA traffic */
#endif
#ifndef XDMVPN_OVERLAY_IFINDEX
#define XDMVPN_OVERLAY_IFINDEX 0  /* dmvpn0-dp: redirecting here delivers on dmvpn0 */
#endif
#ifndef XDMVPN_TUNNEL_IFINDEX
#define XDMVPN_TUNNEL_IFINDEX 0   /* dmvpn0: the kernel's routes on the overlay name it */
#endif
#ifndef XDMVPN_OVERLAY_MAC
#define XDMVPN_OVERLAY_MAC 0      /* dmvpn0's MAC, 48 bits in a u64 */
#endif
#ifndef XDMVPN_OVERLAY_DP_MAC
#define XDMVPN_OVERLAY_DP_MAC 0   /* dmvpn0-dp's MAC, 48 bits in a u64 */
#endif
#ifndef XDMVPN_REDIRECT
#define XDMVPN_REDIRECT 0         /* 1: emit traffic-indication triggers */
#endif
#ifndef XDMVPN_TRIGGER_INTERVAL_NS
#define XDMVPN_TRIGGER_INTERVAL_NS 1000000000ULL /* per (src, dst) pair */
#endif
#ifndef XDMVPN_MISS_INTERVAL_NS
#define XDMVPN_MISS_INTERVAL_NS 1000000000ULL    /* per inner destination */
#endif
#ifndef XDMVPN_TTL
#define XDMVPN_TTL 64             /* outer TTL; 0: copy the inner packet's TTL */
#endif
#ifndef XDMVPN_DF
#define XDMVPN_DF 2               /* outer DF: 0 clear, 1 set, 2 copy inner */
#endif
#ifndef XDMVPN_NH_CACHE_NS
#define XDMVPN_NH_CACHE_NS 1000000000ULL /* age after which a cached next hop is looked up again */
#endif
#ifndef XDMVPN_ADJUST_MSS
#define XDMVPN_ADJUST_MSS 0       /* clamp TCP MSS of SYNs to this; 0 = off */
#endif
#ifndef XDMVPN_NHRP_COST_NS
#define XDMVPN_NHRP_COST_NS 10000000ULL  /* 1e9 / allowed NHRP packets per second */
#endif
#ifndef XDMVPN_IPSEC
#define XDMVPN_IPSEC 0            /* 1: check xdmvpn_ipsec_peers (an [ipsec] profile) */
#endif
#ifndef XDMVPN_NHRP_BURST
#define XDMVPN_NHRP_BURST 100ULL         /* token bucket depth, packets */
#endif

#define XDMVPN_LOCAL_NBMA_BE ((__be32)__builtin_bswap32((__u32)(XDMVPN_LOCAL_NBMA)))

/* ---- sizes -------------------------------------------------------------- */
#define XDMVPN_MAX_PEERS    131072 /* NBMA mappings (host entries): a hub of 100,000 spokes */
#define XDMVPN_MAX_PREFIXES  16384 /* shortcut prefixes */
#define XDMVPN_MAX_STATS    147456 /* per-mapping statistics slots (mappings + prefixes + NHS) */
#define XDMVPN_MAX_NHS       4     /* next-hop servers of a spoke */
#define XDMVPN_MCAST_MAX     64    /* NBMA addresses in the multicast set */
#if XDMVPN_IPSEC
#define XDMVPN_MCAST_BATCH   3     /* multicast copies per tail call (each may go to xfrm) */
#else
#define XDMVPN_MCAST_BATCH   4     /* multicast copies per tail call */
#endif
#define XDMVPN_RL_SLOTS      4096  /* trigger/miss rate-limit slots, power of 2 */
#define XDMVPN_RL_BITS       12
#define XDMVPN_EVENT_DATA    128   /* bytes of inner packet carried in an event, power of 2 */
#define XDMVPN_NHRP_SOURCES  4096  /* NHRP token buckets (LRU) */

#define XDMVPN_GRE_PROTO_IPV4 0x0800
#define XDMVPN_GRE_PROTO_NHRP 0x2001
#define XDMVPN_GRE_HLEN (4 + (XDMVPN_HAS_KEY ? 4 : 0))

/* Program slots of xdmvpn_progs (tc). */
#define XDMVPN_PROG_MCAST 0   /* xdmvpn_tc_mcast: one batch of multicast copies */
#define XDMVPN_PROG_BUILD 1   /* xdmvpn_tc_build: outer headers, next hop, send */
#define XDMVPN_PROG_MSS   2   /* xdmvpn_tc_mss: MSS clamp, one TCP option per call */

/* Program slots of xdmvpn_xdp_progs. */
#define XDMVPN_XDP_DECAP   0  /* xdmvpn_xdp_decap: strip, redirect into the overlay */
#define XDMVPN_XDP_HAIRPIN 1  /* xdmvpn_xdp_hairpin: rewrite outer, XDP_TX (+ trigger) */
#define XDMVPN_XDP_NHRP    2  /* xdmvpn_xdp_nhrp: token bucket, XDP_PASS */
#define XDMVPN_XDP_ENTRY   3  /* xdmvpn_xdp_underlay (used by the benchmark harness) */
#define XDMVPN_XDP_SLOTS   4

/* skb->cb words handed from xdmvpn_tc_encap to xdmvpn_tc_build. */
#define XDMVPN_CB_NBMA  0     /* peer NBMA (network order); multicast: position */
#define XDMVPN_CB_PATH  1     /* enum xdmvpn_path to count on success, PATH_MCAST: multicast */
#define XDMVPN_CB_STATS 2     /* stats/next-hop slot of the mapping */
#define XDMVPN_CB_MSS   3     /* MSS clamp: option offset | options seen << 8 */

/* Flags of xdmvpn_ipsec_peers values. */
#define XDMVPN_IPSEC_REQUIRED 1  /* GRE with this NBMA only through xfrm (ESP) */
#define XDMVPN_IPSEC_SA_UP    2  /* a CHILD_SA with it is installed: encap may hand over */

/* ---- counters ----------------------------------------------------------- */
/* Packets and bytes per path, index of xdmvpn_paths. */
enum xdmvpn_path {
	XDMVPN_PATH_DECAP = 0,      /* GRE for us, inner delivered on the overlay */
	XDMVPN_PATH_HAIRPIN,        /* GRE re-encapsulated toward a peer (XDP_TX) */
	XDMVPN_PATH_NHRP,           /* NHRP passed to the controller */
	XDMVPN_PATH_ENCAP,          /* overlay packet sent to a mapped peer */
	XDMVPN_PATH_ENCAP_NHS,      /* overlay packet without mapping, sent to the NHS */
	XDMVPN_PATH_MCAST,          /* one multicast copy sent */
	XDMVPN_PATH_PASS_NOT_IPV4,  /* underlay frame not IPv4 (ARP, IPv6, VLAN) */
	XDMVPN_PATH_PASS_NOT_GRE,   /* IPv4 but not GRE to our NBMA address */
	XDMVPN_PATH_PASS_FRAGMENT,  /* outer fragment: left to the kernel */
	XDMVPN_PATH_PASS_GRE_OTHER, /* GRE version != 0 or routing bits: not ours */
	XDMVPN_PATH_PASS_WRONG_KEY, /* GRE with another (or no) key */
	XDMVPN_PATH_HAIRPIN_SLOW,   /* hairpin candidate decapsulated instead (no neighbour, IHL>5, TTL) */
	XDMVPN_PATH_TRIGGER,        /* traffic-indication trigger emitted */
	XDMVPN_PATH_TRIGGER_HELD,   /* trigger suppressed by the rate limit */
	XDMVPN_PATH_MISS,           /* miss event emitted */
	XDMVPN_PATH_EVENT_LOST,     /* ring buffer full */
	XDMVPN_PATH_MSS_CLAMPED,    /* SYN whose MSS was lowered */
	XDMVPN_PATH_ENCAP_NEIGH,    /* encap through bpf_redirect_neigh (no neighbour yet) */
	XDMVPN_PATH_NH_FILL,        /* next-hop cache (re)filled from bpf_fib_lookup */
	XDMVPN_PATH_ENCAP_ROUTE,    /* encap: mapping of the gateway of the kernel's route */
	XDMVPN_PATH_ENCAP_XFRM,     /* encap to an IPsec peer: handed to the stack for xfrm */
	XDMVPN_PATH_HAIRPIN_XFRM,   /* hairpin toward an IPsec peer: decapsulated for the kernel */
	XDMVPN_PATH_DECAP_ESP,      /* GRE the kernel decrypted from ESP, delivered on the overlay */
	XDMVPN_PATH_MAX
};

/* Drops per reason, index of xdmvpn_drops. */
enum xdmvpn_drop {
	XDMVPN_DROP_GRE_TRUNCATED = 0, /* GRE to us cut short */
	XDMVPN_DROP_INNER_MALFORMED,   /* inner IPv4 truncated or bad header */
	XDMVPN_DROP_INNER_PROTO,       /* GRE protocol neither IPv4 nor NHRP */
	XDMVPN_DROP_NHRP_RATE,         /* NHRP over the per-source token bucket */
	XDMVPN_DROP_LOOP,              /* inner destination maps back to the sender */
	XDMVPN_DROP_HELPER,            /* adjust head/room or redirect failed */
	XDMVPN_DROP_NO_MAPPING,        /* encap: no mapping and no NHS */
	XDMVPN_DROP_NO_ROUTE,          /* bpf_fib_lookup found no underlay route */
	XDMVPN_DROP_NO_NEIGH,          /* multicast copy to a peer without a neighbour entry */
	XDMVPN_DROP_TOO_BIG,           /* outer packet above the underlay MTU */
	XDMVPN_DROP_OVERLAY_NOT_IPV4,  /* encap: overlay frame not IPv4 */
	XDMVPN_DROP_TAIL_CALL,         /* tail call failed (program slot empty) */
	XDMVPN_DROP_PLAINTEXT_IPSEC,   /* plaintext GRE from (XDP) or to (tc egress) an IPsec peer */
	XDMVPN_DROP_IPSEC_NO_SA,       /* encap to an IPsec peer without an installed CHILD_SA */
	XDMVPN_DROP_MAX
};

/* A packets/bytes pair. */
struct xdmvpn_count {
	__u64 packets;
	__u64 bytes;
};

/* ---- forwarding state ---------------------------------------------------- */
/* Where an overlay destination goes: value of xdmvpn_peers, xdmvpn_prefixes
 * and xdmvpn_nhs. */
struct xdmvpn_peer {
	__be32 nbma;      /* underlay address of the peer, network order */
	__u32 stats_idx;  /* slot in xdmvpn_peer_stats, chosen by the controller */
	__u32 flags;      /* reserved */
};

/* Key of xdmvpn_prefixes (LPM trie). */
struct xdmvpn_lpm_key {
	__u32 prefixlen;  /* 0..32 */
	__be32 addr;      /* network order */
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
	__be32 src;       /* pair that emitted it (for inspection) */
	__be32 dst;
};

/* Cached underlay next hop of one mapping (per CPU, indexed like the
 * statistics by xdmvpn_peer.stats_idx).  Valid while nbma matches the
 * mapping's and stamp_ns is younger than XDMVPN_NH_CACHE_NS. */
struct xdmvpn_nh {
	__u64 stamp_ns;   /* coarse time of the fill (empty: nbma 0) */
	__be32 nbma;      /* the NBMA address it was filled for */
	__u32 ifindex;    /* egress interface */
	__u16 mtu;        /* of the route, outer IPv4 bytes */
	__u8 dmac[6];
	__u8 smac[6];
	__u16 pad;
};

/* Hand-over between the XDP programs of one packet (per CPU: a packet's
 * tail calls run on one CPU without interruption). */
struct xdmvpn_scratch {
	__u64 bytes;      /* frame length at entry */
	__u32 strip;      /* outer IPv4 + GRE bytes after Ethernet */
	__be32 nbma;      /* hairpin: NBMA of the destination's peer */
	__u32 stats_idx;  /* hairpin: the mapping's slot */
	__u32 pad;
};

/* NHRP token bucket of one sender. */
struct xdmvpn_bucket {
	__u64 credit_ns;  /* tokens, as nanoseconds of credit */
	__u64 last_ns;    /* coarse time of the last refill */
};

/* Event to the controller. */
enum xdmvpn_event_type {
	XDMVPN_EV_TRIGGER = 1, /* hub hairpinned (src, dst): send a traffic indication */
	XDMVPN_EV_MISS = 2,    /* encap found no mapping for dst: resolve it */
};

struct xdmvpn_event {
	__u32 type;       /* enum xdmvpn_event_type */
	__be32 nbma_src;  /* sender NBMA (trigger), 0 (miss) */
	__be32 inner_src;
	__be32 inner_dst;
	__u32 len;        /* valid bytes in data */
	__u32 pad;
	__u8 data[XDMVPN_EVENT_DATA]; /* start of the inner IPv4 packet */
};

/* ---- maps ---------------------------------------------------------------- */
#ifdef XDMVPN_PIN_DIR
#define XDMVPN_MAP(type, k, v, name, n, fl) \
	BPF_TABLE_PINNED(type, k, v, name, n, XDMVPN_PIN_DIR "/" #name, fl)
#define XDMVPN_RINGBUF_SECTION "maps/ringbuf:" XDMVPN_PIN_DIR "/xdmvpn_events"
#else
#define XDMVPN_MAP(type, k, v, name, n, fl) BPF_F_TABLE(type, k, v, name, n, fl)
#define XDMVPN_RINGBUF_SECTION "maps/ringbuf"
#endif

/* Host entries: inner (overlay) IPv4 -> peer.  The NHRP cache's NBMA mappings. */
XDMVPN_MAP("hash", __be32, struct xdmvpn_peer, xdmvpn_peers, XDMVPN_MAX_PEERS, 0);

/* Shortcut prefixes: longest match of the inner destination -> peer. */
XDMVPN_MAP("lpm_trie", struct xdmvpn_lpm_key, struct xdmvpn_peer, xdmvpn_prefixes,
	   XDMVPN_MAX_PREFIXES, BPF_F_NO_PREALLOC);

/* Next-hop servers of a spoke, first non-zero entry used for unmapped traffic. */
XDMVPN_MAP("array", __u32, struct xdmvpn_peer, xdmvpn_nhs, XDMVPN_MAX_NHS, 0);

/* Multicast set: NBMA addresses (network order) packed from index 0, 0 ends it. */
XDMVPN_MAP("array", __u32, __be32, xdmvpn_mcast, XDMVPN_MCAST_MAX, 0);

/* NBMA addresses (network order) whose GRE must go through xfrm -> flags
 * XDMVPN_IPSEC_*; read only when compiled with XDMVPN_IPSEC. */
XDMVPN_MAP("hash", __be32, __u32, xdmvpn_ipsec_peers, XDMVPN_MAX_PEERS, BPF_F_NO_PREALLOC);

/* Per-mapping packets, bytes and last use, indexed by xdmvpn_peer.stats_idx. */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_peer_stats, xdmvpn_peer_stats,
	   XDMVPN_MAX_STATS, 0);

/* Packets and bytes per path (enum xdmvpn_path). */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_count, xdmvpn_paths, XDMVPN_PATH_MAX, 0);

/* Drops per reason (enum xdmvpn_drop). */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_count, xdmvpn_drops, XDMVPN_DROP_MAX, 0);

/* Trigger and miss rate limit: shared, direct-mapped, written only on emit. */
XDMVPN_MAP("array", __u32, struct xdmvpn_rl_slot, xdmvpn_ratelimit, XDMVPN_RL_SLOTS, 0);

/* NHRP token buckets per sender NBMA (Cisco max-send). */
XDMVPN_MAP("lru_hash", __be32, struct xdmvpn_bucket, xdmvpn_nhrp_buckets,
	   XDMVPN_NHRP_SOURCES, 0);

/* Next hops per mapping (struct xdmvpn_nh), filled by the programs. */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_nh, xdmvpn_nh_cache, XDMVPN_MAX_STATS, 0);

/* Per-packet hand-over between tail-called XDP programs. */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_scratch, xdmvpn_scratch, 1, 0);

/* Tail-call targets of the tc programs (XDMVPN_PROG_*). */
XDMVPN_MAP("prog", __u32, __u32, xdmvpn_progs, 4, 0);

/* Tail-call targets of the XDP programs (XDMVPN_XDP_*). */
XDMVPN_MAP("prog", __u32, __u32, xdmvpn_xdp_progs, XDMVPN_XDP_SLOTS, 0);

/* Events to the controller (struct xdmvpn_event). */
struct xdmvpn_events_table_t {
	int key;
	__u32 leaf;
	int (*ringbuf_output)(void *, __u64, __u64);
	void *(*ringbuf_reserve)(__u64);
	void (*ringbuf_discard)(void *, __u64);
	void (*ringbuf_submit)(void *, __u64);
	__u32 max_entries;
};
__attribute__((section(XDMVPN_RINGBUF_SECTION)))
struct xdmvpn_events_table_t xdmvpn_events = { .max_entries = 64 * 4096 };

#endif /* XDMVPN_MAPS_H */
