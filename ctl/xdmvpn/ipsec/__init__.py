"""IPsec through stock strongSwan, over upstream vici only (docs/ipsec.md).

- wire:     the vici wire format (pure)
- client:   an asyncio vici client (requests, events, streamed list-sas)
- conns:    the vici messages for one node: per-peer connections, PSK, certificates (pure)
- sas:      the SAs charon reports, per NBMA peer, kept current by events (pure)
- identity: which tunnel addresses an IKE identity may register (pure)
- manager:  want/unwant peers -> load, initiate, terminate, unload; reconnect, reconcile
- peers:    what the daemon asks: NHRP gate, identity binding, make-before-break
- kernel:   can this kernel install ESP SAs?
- charon:   a private charon per network namespace (lab, tests)
"""
