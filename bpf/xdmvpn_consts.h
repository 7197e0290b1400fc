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
#ifndef XDMVPN_HAS_NBMA6
#define XDMVPN_HAS_NBMA6 0        /* 1: an IPv6 NBMA address (XDMVPN_LOCAL_NBMA6_W*) */
#endif
#ifndef XDMVPN_LOCAL_NBMA6_W0     /* own underlay IPv6, four words as they lie in memory */
#define XDMVPN_LOCAL_NBMA6_W0 0
#define XDMVPN_LOCAL_NBMA6_W1 0
#define XDMVPN_LOCAL_NBMA6_W2 0
#define XDMVPN_LOCAL_NBMA6_W3 0
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
#ifndef XDMVPN_PTB_COST_NS
#define XDMVPN_PTB_COST_NS 10000000ULL /* 1e9 / ICMPv6 Packet Too Big per second (all) */
#endif
#ifndef XDMVPN_PTB_BURST
#define XDMVPN_PTB_BURST 50ULL         /* depth of that budget */
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
#define XDMVPN_MCAST6_BATCH  3     /* copies to IPv6 NBMA addresses per tail call */
#define XDMVPN_RL_BITS       12    /* trigger rate-limit slots: 2^bits */
#define XDMVPN_RL_SLOTS      (1 << XDMVPN_RL_BITS)
#define XDMVPN_EVENT_DATA    128   /* bytes of inner packet carried in an event, power of 2 */
#define XDMVPN_EVENTS_RING_BYTES (256 * 1024) /* ring buffer: a power-of-2 number of pages,
					       * ~1,600 events of 160 bytes */
#define XDMVPN_NHRP_SOURCES  4096  /* NHRP token buckets of known sources (LRU) */
#define XDMVPN_NHRP_UNKNOWN_SOURCES 4096 /* ... of unknown sources (their own LRU) */

/* ---- protocol numbers --------------------------------------------------- */
/* IP protocol numbers (IANA; <uapi/linux/in.h> is not included, see
 * xdmvpn_parse.h).  IPv6's extension headers come from <uapi/linux/in6.h>. */
#define XDMVPN_IPPROTO_TCP 6
#define XDMVPN_IPPROTO_GRE 47

#define XDMVPN_GRE_PROTO_IPV4 0x0800
#define XDMVPN_GRE_PROTO_NHRP 0x2001
#define XDMVPN_GRE_PROTO_IPV6 0x86DD

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

/* IPv6 header fields (RFC 8200). */
#define XDMVPN_IPV6_VERSION  6
#define XDMVPN_IPV6_HLEN     40
#define XDMVPN_IPV6_MIN_MTU  1280  /* RFC 8200 5: every link carries this */
#define XDMVPN_IPV6_EXT_MAX  2     /* extension headers walked before GRE (bounded loop) */
#define XDMVPN_IPV6_EXT_BYTES 128  /* their total length walked; longer chains: the kernel */
#define XDMVPN_IPV6_EXT_UNIT 8     /* bytes per unit of an extension header's length */
#define XDMVPN_IPV6_MCAST_BYTE 0xff /* ff00::/8 */
#define XDMVPN_IPV6_SCOPE_LINK 2   /* multicast scope (low nibble of byte 1): link-local */
#define XDMVPN_IPV6_LL_WORD  0xfe80 /* fe80::/10: first 16 bits, masked by ... */
#define XDMVPN_IPV6_LL_MASK  0xffc0
#define XDMVPN_IPV6_MAX_LEN  0xffff /* largest payload length: asks the fib for the route MTU */

/* ICMPv6 Packet Too Big (RFC 4443 3.2). */
#define XDMVPN_ICMP6_PTB     2
#define XDMVPN_ICMP6_HLEN    8
#define XDMVPN_PTB_HOP_LIMIT 255
#define XDMVPN_PTB_QUOTE     (XDMVPN_IPV6_MIN_MTU - XDMVPN_IPV6_HLEN - XDMVPN_ICMP6_HLEN)
#define XDMVPN_PTB_CSUM_CHUNK 512  /* bytes per bpf_csum_diff call (its limit) */

/* What decap may strip after Ethernet: outer IPv4 with options or outer IPv6
 * with its walked extension headers, + GRE with every optional word. */
#define XDMVPN_MAX_STRIP     (XDMVPN_IPV6_HLEN + XDMVPN_IPV6_EXT_BYTES + XDMVPN_GRE_MAX_LEN)
#define XDMVPN_OUTER4_LEN    (XDMVPN_IPV4_MIN_HLEN + XDMVPN_GRE_HLEN) /* what encap pushes */
#define XDMVPN_OUTER6_LEN    (XDMVPN_IPV6_HLEN + XDMVPN_GRE_HLEN)

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
#define XDMVPN_PROG_ENCAP6 3  /* xdmvpn_tc_encap6: classify an IPv6 overlay packet */
#define XDMVPN_PROG_BUILD6 4  /* xdmvpn_tc_build6: outer IPv6, next hop, send */
#define XDMVPN_PROG_MCAST6 5  /* xdmvpn_tc_mcast6: one batch of copies to IPv6 NBMA */
#define XDMVPN_PROG_PTB   6   /* xdmvpn_tc_ptb: ICMPv6 Packet Too Big back to the source */
#define XDMVPN_PROG_NHFILL 7  /* xdmvpn_tc_nhfill: next hop from the fib, then send */
#define XDMVPN_TC_SLOTS   8

/* xdmvpn_xdp_progs. */
#define XDMVPN_XDP_DECAP   0  /* xdmvpn_xdp_decap: strip, redirect into the overlay */
#define XDMVPN_XDP_HAIRPIN 1  /* xdmvpn_xdp_hairpin: new outer IPv4, XDP_TX (+ trigger) */
#define XDMVPN_XDP_NHRP    2  /* xdmvpn_xdp_nhrp: admission, XDP_PASS */
#define XDMVPN_XDP_ENTRY   3  /* xdmvpn_xdp_underlay (used by the benchmark harness) */
#define XDMVPN_XDP_UNDERLAY6 4 /* xdmvpn_xdp_underlay6: outer IPv6 up to GRE */
#define XDMVPN_XDP_INNER4  5  /* xdmvpn_xdp_inner4: where an inner IPv4 packet goes */
#define XDMVPN_XDP_INNER6  6  /* xdmvpn_xdp_inner6: where an inner IPv6 packet goes */
#define XDMVPN_XDP_HAIRPIN6 7 /* xdmvpn_xdp_hairpin6: hairpin toward an IPv6 NBMA address */
#define XDMVPN_XDP_NHFILL  8  /* xdmvpn_xdp_nhfill: the hairpin's next hop from the fib */
#define XDMVPN_XDP_TRIGGER 9  /* xdmvpn_xdp_trigger: the hairpin's traffic-indication event */
#define XDMVPN_XDP_SLOTS   10

/* skb->cb words handed from xdmvpn_tc_encap to xdmvpn_tc_build. */
#define XDMVPN_CB_NBMA  0     /* peer NBMA (network order); multicast: position */
#define XDMVPN_CB_PATH  1     /* enum xdmvpn_path to count on success, PATH_MCAST: multicast */
#define XDMVPN_CB_STATS 2     /* stats/next-hop slot of the mapping */
#define XDMVPN_CB_MSS   3     /* MSS clamp: option offset | options seen << 8; then PTB:
			       * the path MTU, or XDMVPN_F_NEIGH: the device */
#define XDMVPN_CB_FLAGS 4     /* XDMVPN_F_* of the packet and its mapping, and of the
			       * inner header: */
#define XDMVPN_CB_TOS_SHIFT 8 /* TOS / traffic class */
#define XDMVPN_CB_TTL_SHIFT 16 /* TTL / hop limit */
#define XDMVPN_CB_DF    (1 << 24) /* IPv4 DF (IPv6: always) */
#define XDMVPN_MCAST_CONVERT 0xffffffff /* cb[XDMVPN_CB_NBMA] of xdmvpn_tc_mcast6: outer
					 * IPv4 to turn into IPv6 first */
#define XDMVPN_CB_MSS_OFF_MASK 0xff
#define XDMVPN_CB_MSS_SEEN_SHIFT 8

/* ---- flags ---------------------------------------------------------------- */
/* xdmvpn_peer.flags. */
#define XDMVPN_PEER_NBMA6 1      /* the NBMA address is IPv6: xdmvpn_nbma6[stats_idx] */

/* Families of one packet: xdmvpn_scratch.flags, xdmvpn_event.flags, skb->cb. */
#define XDMVPN_F_OUTER6 1        /* the outer (NBMA) header is IPv6 (event: nbma_src) */
#define XDMVPN_F_INNER6 2        /* the inner (overlay) packet is IPv6 */
#define XDMVPN_F_PEER6  4        /* the destination's NBMA address is IPv6 */
#define XDMVPN_F_FILLED 8        /* XDP: the next hop was filled for this packet */
#define XDMVPN_F_TRIGGERED 16    /* XDP: its trigger was decided (sent, or lost) */
#define XDMVPN_F_NEIGH  32       /* tc: no neighbour yet, send with bpf_redirect_neigh
				  * through the device in cb[XDMVPN_CB_MSS] */

/* Values of xdmvpn_ipsec_peers. */
#define XDMVPN_IPSEC_REQUIRED 1  /* GRE with this NBMA only through xfrm (ESP) */
#define XDMVPN_IPSEC_SA_UP    2  /* a CHILD_SA with it is installed: encap may hand over */

/* ---- benchmark build (XDMVPN_BENCH) --------------------------------------- */
#define XDMVPN_BENCH_TEMPLATE 256 /* bytes of the template frame */
#define XDMVPN_BENCH_VERDICTS 8   /* XDP verdicts counted (XDP_ABORTED..XDP_REDIRECT + spare) */

#endif /* XDMVPN_CONSTS_H */
