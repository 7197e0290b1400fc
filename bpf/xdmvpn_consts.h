/* SPDX-License-Identifier: GPL-2.0-only */
/* xdmvpn constants: compile-time configuration, sizes, protocol numbers,
 * program slots, flags.  Every number the programs use has a name here.
 *
 * The ones Python relies on are mirrored in ctl/xdmvpn/dataplane/abi.py and
 * checked against this file by tests/dataplane/test_abi.py.
 *
 * Configuration comes as -D flags from ctl/xdmvpn/dataplane/build.py; the
 * defaults below only make the file self-contained for a quick compile check.
 */
#ifndef XDMVPN_CONSTS_H
#define XDMVPN_CONSTS_H

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
#ifndef XDMVPN_TTL
#define XDMVPN_TTL 64             /* outer TTL; 0: copy the inner packet's TTL */
#endif
#define XDMVPN_DF_CLEAR   0      /* values of XDMVPN_DF: outer DF clear, */
#define XDMVPN_DF_SET     1      /* set, */
#define XDMVPN_DF_INHERIT 2      /* copied from the inner packet */
#ifndef XDMVPN_DF
#define XDMVPN_DF XDMVPN_DF_INHERIT
#endif
#ifndef XDMVPN_NH_CACHE_NS
#define XDMVPN_NH_CACHE_NS 1000000000ULL /* age after which a cached next hop is looked up again */
#endif
#ifndef XDMVPN_ADJUST_MSS
#define XDMVPN_ADJUST_MSS 0       /* clamp TCP MSS of SYNs to this; 0 = off */
#endif
#ifndef XDMVPN_NHRP_COST_NS
#define XDMVPN_NHRP_COST_NS 100000000ULL /* 1e9 / NHRP packets per second from one source */
#endif
#ifndef XDMVPN_NHRP_BURST
#define XDMVPN_NHRP_BURST 100ULL         /* per-source bucket depth, packets */
#endif
#ifndef XDMVPN_NHRP_UNKNOWN_COST_NS
#define XDMVPN_NHRP_UNKNOWN_COST_NS 100000ULL /* 1e9 / NHRP packets per second from all
					       * unknown sources together */
#endif
#ifndef XDMVPN_NHRP_UNKNOWN_BURST
#define XDMVPN_NHRP_UNKNOWN_BURST 10000ULL    /* depth of that global budget, packets */
#endif
#ifndef XDMVPN_IPSEC
#define XDMVPN_IPSEC 0            /* 1: check xdmvpn_ipsec_peers (an [ipsec] profile) */
#endif
#ifndef XDMVPN_TEST_CLOCK
#define XDMVPN_TEST_CLOCK 0       /* 1 (tests only): the clock is xdmvpn_test_clock[0] */
#endif

#define XDMVPN_LOCAL_NBMA_BE ((__be32)__builtin_bswap32((__u32)(XDMVPN_LOCAL_NBMA)))

/* ---- sizes -------------------------------------------------------------- */
#define XDMVPN_MAX_PEERS    131072 /* NBMA mappings (host entries): a hub of 100,000 spokes */
#define XDMVPN_MAX_PREFIXES  16384 /* shortcut prefixes */
#define XDMVPN_MAX_STATS    (XDMVPN_MAX_PEERS + XDMVPN_MAX_PREFIXES) /* per-mapping slots
				    * (mappings, prefixes, NHS; slot 0 unused) */
#define XDMVPN_MAX_NHS       4     /* next-hop servers of a spoke */
#define XDMVPN_MAX_KNOWN     XDMVPN_MAX_STATS /* known NBMA addresses: each is the target of
					       * at least one entry, and each entry holds a slot */
#define XDMVPN_MCAST_MAX     64    /* NBMA addresses in the multicast set */
#if XDMVPN_IPSEC
#define XDMVPN_MCAST_BATCH   3     /* multicast copies per tail call (each may go to xfrm) */
#else
#define XDMVPN_MCAST_BATCH   4     /* multicast copies per tail call */
#endif
#define XDMVPN_RL_BITS       12    /* trigger rate-limit slots: 2^bits */
#define XDMVPN_RL_SLOTS      (1 << XDMVPN_RL_BITS)
#define XDMVPN_EVENT_DATA    128   /* bytes of inner packet carried in an event, power of 2 */
#define XDMVPN_EVENTS_RING_BYTES (256 * 1024) /* ring buffer: a power-of-2 number of pages,
					       * ~1,600 events of 160 bytes */
#define XDMVPN_NHRP_SOURCES  4096  /* NHRP token buckets of known sources (LRU) */
#define XDMVPN_NHRP_UNKNOWN_SOURCES 4096 /* ... of unknown sources (their own LRU) */

/* ---- protocol numbers --------------------------------------------------- */
#define XDMVPN_GRE_PROTO_IPV4 0x0800
#define XDMVPN_GRE_PROTO_NHRP 0x2001

/* GRE flag bits (RFC 2784/2890, first 16 bits of the header, host order). */
#define XDMVPN_GRE_F_CSUM    0x8000
#define XDMVPN_GRE_F_ROUTING 0x4000
#define XDMVPN_GRE_F_KEY     0x2000
#define XDMVPN_GRE_F_SEQ     0x1000
#define XDMVPN_GRE_F_STRICT  0x0800
#define XDMVPN_GRE_F_RECUR   0x0700
#define XDMVPN_GRE_F_VER     0x0007

/* GRE lengths: the base header (flags, protocol), each optional word
 * (checksum + reserved, key, sequence) and all of them. */
#define XDMVPN_GRE_BASE_LEN  4
#define XDMVPN_GRE_WORD_LEN  4
#define XDMVPN_GRE_MAX_LEN   (XDMVPN_GRE_BASE_LEN + 3 * XDMVPN_GRE_WORD_LEN)
#define XDMVPN_GRE_HLEN      (XDMVPN_GRE_BASE_LEN + (XDMVPN_HAS_KEY ? XDMVPN_GRE_WORD_LEN : 0))

/* IPv4 header fields. */
#define XDMVPN_IPV4_VERSION  4
#define XDMVPN_HDR_WORD      4     /* bytes per unit of IPv4 IHL and TCP data offset */
#define XDMVPN_IPV4_MIN_IHL  5     /* words */
#define XDMVPN_IPV4_MIN_HLEN 20
#define XDMVPN_IPV4_MAX_HLEN 60    /* IHL 15 */
#define XDMVPN_IP_MF         0x2000
#define XDMVPN_IP_DF         0x4000
#define XDMVPN_IP_OFFSET     0x1fff
#define XDMVPN_IPV4_TTL_WORD 0x0100 /* TTL 1 in the (TTL, protocol) checksum word */
#define XDMVPN_IPV4_MAX_LEN  0xffff /* largest tot_len: asks the fib for the route MTU */
#define XDMVPN_IPV4_MCAST_MASK 0xf0000000 /* 224.0.0.0/4, host order */
#define XDMVPN_IPV4_MCAST_NET  0xe0000000
#define XDMVPN_IPV4_BROADCAST  0xffffffff

/* What decap may strip after Ethernet: outer IPv4 with options + GRE with
 * every optional word.  The hairpin's outer IPv4 has no options. */
#define XDMVPN_MAX_STRIP     (XDMVPN_IPV4_MAX_HLEN + XDMVPN_GRE_MAX_LEN)
#define XDMVPN_HAIRPIN_MAX_STRIP (XDMVPN_IPV4_MIN_HLEN + XDMVPN_GRE_MAX_LEN)

/* TCP options (RFC 9293) for the MSS clamp. */
#define XDMVPN_TCPOPT_EOL    0
#define XDMVPN_TCPOPT_NOP    1
#define XDMVPN_TCPOPT_MSS    2
#define XDMVPN_TCPOLEN_MSS   4
#define XDMVPN_TCPOLEN_MIN   2     /* kind + length: the shortest option with a length byte */
#define XDMVPN_MSS_MAX_OPTIONS 8   /* options looked at per SYN (one tail call each) */

/* Multiplicative hashing of the trigger rate limit (Knuth; murmur3 finaliser). */
#define XDMVPN_HASH_MUL_A    0x9e3779b1u
#define XDMVPN_HASH_MUL_B    0x85ebca6bu

/* ---- program slots -------------------------------------------------------- */
/* xdmvpn_progs (tc). */
#define XDMVPN_PROG_MCAST 0   /* xdmvpn_tc_mcast: one batch of multicast copies */
#define XDMVPN_PROG_BUILD 1   /* xdmvpn_tc_build: outer headers, next hop, send */
#define XDMVPN_PROG_MSS   2   /* xdmvpn_tc_mss: MSS clamp, one TCP option per call */
#define XDMVPN_TC_SLOTS   3

/* xdmvpn_xdp_progs. */
#define XDMVPN_XDP_DECAP   0  /* xdmvpn_xdp_decap: strip, redirect into the overlay */
#define XDMVPN_XDP_HAIRPIN 1  /* xdmvpn_xdp_hairpin: rewrite outer, XDP_TX (+ trigger) */
#define XDMVPN_XDP_NHRP    2  /* xdmvpn_xdp_nhrp: admission, XDP_PASS */
#define XDMVPN_XDP_ENTRY   3  /* xdmvpn_xdp_underlay (used by the benchmark harness) */
#define XDMVPN_XDP_SLOTS   4

/* skb->cb words handed from xdmvpn_tc_encap to xdmvpn_tc_build. */
#define XDMVPN_CB_NBMA  0     /* peer NBMA (network order); multicast: position */
#define XDMVPN_CB_PATH  1     /* enum xdmvpn_path to count on success, PATH_MCAST: multicast */
#define XDMVPN_CB_STATS 2     /* stats/next-hop slot of the mapping */
#define XDMVPN_CB_MSS   3     /* MSS clamp: option offset | options seen << 8 */
#define XDMVPN_CB_MSS_OFF_MASK 0xff
#define XDMVPN_CB_MSS_SEEN_SHIFT 8

/* ---- flags ---------------------------------------------------------------- */
/* Values of xdmvpn_ipsec_peers. */
#define XDMVPN_IPSEC_REQUIRED 1  /* GRE with this NBMA only through xfrm (ESP) */
#define XDMVPN_IPSEC_SA_UP    2  /* a CHILD_SA with it is installed: encap may hand over */

/* ---- benchmark build (XDMVPN_BENCH) --------------------------------------- */
#define XDMVPN_BENCH_TEMPLATE 256 /* bytes of the template frame */
#define XDMVPN_BENCH_VERDICTS 8   /* XDP verdicts counted (XDP_ABORTED..XDP_REDIRECT + spare) */

#endif /* XDMVPN_CONSTS_H */
