/* SPDX-License-Identifier: GPL-2.0-only */
/* Every map of xdmvpn, and nothing else: constants are in xdmvpn_consts.h,
 * structures and enums in xdmvpn_structs.h.
 *
 * ctl/xdmvpn/dataplane/abi.py names each map with its type, key, value, size
 * and flags; tests/dataplane/test_abi.py checks them against the compiled
 * module.  With XDMVPN_PIN_DIR every map is pinned there (bcc reuses a pin
 * that exists).
 */
#ifndef XDMVPN_MAPS_H
#define XDMVPN_MAPS_H

#include "xdmvpn_structs.h"

#ifdef XDMVPN_PIN_DIR
#define XDMVPN_MAP(type, k, v, name, n, fl) \
	BPF_TABLE_PINNED(type, k, v, name, n, XDMVPN_PIN_DIR "/" #name, fl)
#define XDMVPN_RINGBUF_SECTION "maps/ringbuf:" XDMVPN_PIN_DIR "/xdmvpn_events"
#else
#define XDMVPN_MAP(type, k, v, name, n, fl) BPF_F_TABLE(type, k, v, name, n, fl)
#define XDMVPN_RINGBUF_SECTION "maps/ringbuf"
#endif

/* ---- forwarding state, written by the controller --------------------------- */
/* Host entries: inner (overlay) IPv4 -> peer.  The NHRP cache's NBMA mappings. */
XDMVPN_MAP("hash", __be32, struct xdmvpn_peer, xdmvpn_peers, XDMVPN_MAX_PEERS, 0);

/* Shortcut prefixes: longest match of the inner destination -> peer. */
XDMVPN_MAP("lpm_trie", struct xdmvpn_lpm_key, struct xdmvpn_peer, xdmvpn_prefixes,
	   XDMVPN_MAX_PREFIXES, BPF_F_NO_PREALLOC);

/* The same for IPv6 overlay destinations. */
XDMVPN_MAP("hash", struct xdmvpn_in6, struct xdmvpn_peer, xdmvpn_peers6, XDMVPN_MAX_PEERS, 0);
XDMVPN_MAP("lpm_trie", struct xdmvpn_lpm6_key, struct xdmvpn_peer, xdmvpn_prefixes6,
	   XDMVPN_MAX_PREFIXES, BPF_F_NO_PREALLOC);

/* IPv6 NBMA address of the entry whose stats_idx is the index (XDMVPN_PEER_NBMA6). */
XDMVPN_MAP("array", __u32, struct xdmvpn_in6, xdmvpn_nbma6, XDMVPN_MAX_STATS, 0);

/* Next-hop servers of a spoke, first non-zero entry used for unmapped traffic. */
XDMVPN_MAP("array", __u32, struct xdmvpn_peer, xdmvpn_nhs, XDMVPN_MAX_NHS, 0);

/* Multicast set: NBMA addresses (network order) packed from index 0, 0 ends it. */
XDMVPN_MAP("array", __u32, __be32, xdmvpn_mcast, XDMVPN_MCAST_MAX, 0);

/* IPv6 multicast set: packed from index 0, all-zero ends it; copies to it follow
 * the IPv4 set's. */
XDMVPN_MAP("array", __u32, struct xdmvpn_in6, xdmvpn_mcast6, XDMVPN_MCAST_MAX, 0);

/* The node's own overlay IPv6 address: source of ICMPv6 Packet Too Big (0: none sent). */
XDMVPN_MAP("array", __u32, struct xdmvpn_in6, xdmvpn_local6, 1, 0);

/* NBMA addresses (network order) whose GRE must go through xfrm -> flags
 * XDMVPN_IPSEC_*; read only when compiled with XDMVPN_IPSEC. */
XDMVPN_MAP("hash", __be32, __u32, xdmvpn_ipsec_peers, XDMVPN_MAX_PEERS, BPF_F_NO_PREALLOC);

/* Known NBMA addresses (network order) -> how many host entries, prefixes and
 * NHS slots point at them.  NHRP from these faces only its own token bucket. */
XDMVPN_MAP("hash", __be32, __u32, xdmvpn_known_peers, XDMVPN_MAX_KNOWN, BPF_F_NO_PREALLOC);
XDMVPN_MAP("hash", struct xdmvpn_in6, __u32, xdmvpn_known_peers6, XDMVPN_MAX_KNOWN,
	   BPF_F_NO_PREALLOC);

/* ---- counters --------------------------------------------------------------- */
/* Per-mapping packets, bytes and last use, indexed by xdmvpn_peer.stats_idx. */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_peer_stats, xdmvpn_peer_stats,
	   XDMVPN_MAX_STATS, 0);

/* Packets and bytes per path (enum xdmvpn_path). */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_count, xdmvpn_paths, XDMVPN_PATH_MAX, 0);

/* Drops per reason (enum xdmvpn_drop). */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_count, xdmvpn_drops, XDMVPN_DROP_MAX, 0);

/* ---- state of the programs ---------------------------------------------------- */
/* Trigger rate limit: shared, direct-mapped, written only on emit. */
XDMVPN_MAP("array", __u32, struct xdmvpn_rl_slot, xdmvpn_ratelimit, XDMVPN_RL_SLOTS, 0);

/* NHRP token buckets per known sender NBMA (Cisco max-send). */
XDMVPN_MAP("lru_hash", __be32, struct xdmvpn_bucket, xdmvpn_nhrp_buckets,
	   XDMVPN_NHRP_SOURCES, 0);

/* NHRP token buckets per unknown sender NBMA: their own LRU, so that a flood
 * of new sources can never evict a known peer's bucket. */
XDMVPN_MAP("lru_hash", __be32, struct xdmvpn_bucket, xdmvpn_nhrp_unknown_buckets,
	   XDMVPN_NHRP_UNKNOWN_SOURCES, 0);

/* The same per IPv6 sender: known ones by address, unknown ones by their /64
 * (one host usually has a whole /64 to pick sources from). */
XDMVPN_MAP("lru_hash", struct xdmvpn_in6, struct xdmvpn_bucket, xdmvpn_nhrp_buckets6,
	   XDMVPN_NHRP_SOURCES, 0);
XDMVPN_MAP("lru_hash", struct xdmvpn_in6, struct xdmvpn_bucket, xdmvpn_nhrp_unknown_buckets6,
	   XDMVPN_NHRP_UNKNOWN_SOURCES, 0);

/* The global NHRP budget of all unknown senders together: shared, written
 * only when a packet is admitted. */
XDMVPN_MAP("array", __u32, struct xdmvpn_bucket, xdmvpn_nhrp_budget, 1, 0);

/* The budget of ICMPv6 Packet Too Big messages (RFC 4443 2.4 (f)). */
XDMVPN_MAP("array", __u32, struct xdmvpn_bucket, xdmvpn_ptb_budget, 1, 0);

/* Next hops per mapping (struct xdmvpn_nh), filled by the programs. */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_nh, xdmvpn_nh_cache, XDMVPN_MAX_STATS, 0);

/* Per-packet hand-over between tail-called XDP programs. */
XDMVPN_MAP("percpu_array", __u32, struct xdmvpn_scratch, xdmvpn_scratch, 1, 0);

/* Tail-call targets of the tc programs (XDMVPN_PROG_*). */
XDMVPN_MAP("prog", __u32, __u32, xdmvpn_progs, XDMVPN_TC_SLOTS, 0);

/* Tail-call targets of the XDP programs (XDMVPN_XDP_*). */
XDMVPN_MAP("prog", __u32, __u32, xdmvpn_xdp_progs, XDMVPN_XDP_SLOTS, 0);

/* Events to the controller (struct xdmvpn_event): bcc's ring buffer
 * declaration, spelt out so that it can be pinned. */
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
struct xdmvpn_events_table_t xdmvpn_events = { .max_entries = XDMVPN_EVENTS_RING_BYTES };

/* ---- tests and benchmarks only (never pinned) ---------------------------------- */
#if XDMVPN_TEST_CLOCK
/* The programs' clock (ns) in a test build: the test sets it. */
BPF_ARRAY(xdmvpn_test_clock, __u64, 1);
#endif

#ifdef XDMVPN_BENCH
/* Verdicts of the bench build, which turns each into XDP_DROP. */
BPF_PERCPU_ARRAY(xdmvpn_bench_verdicts, __u64, XDMVPN_BENCH_VERDICTS);
/* The frame every live-frames run restores first. */
BPF_ARRAY(xdmvpn_bench_pkt, struct xdmvpn_bench_tmpl, 1);
/* Pacing of the traffic generator, and the sink's count. */
BPF_ARRAY(xdmvpn_bench_pacer, struct xdmvpn_bench_pace, 1);
BPF_PERCPU_ARRAY(xdmvpn_bench_sunk, __u64, 1);
#endif

#endif /* XDMVPN_MAPS_H */
