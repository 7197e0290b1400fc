"""Why the engine drops a packet: every reason counted in stats[("drop", reason)], in one
place (the exporter's label values are these)."""

from __future__ import annotations

from .validate import REASONS as INVALID

DROP_REASONS: tuple[str, ...] = (
    "malformed",                  # the codec could not decode it
    "checksum",                   # RFC 2332 5.2.0.1
    "authentication",             # wrong or missing secret
    *INVALID,                     # failed validation (validate.py)
    "unhandled",
    "not_a_server",               # a registration to a spoke
    "unexpected_reply",           # no pending request of ours matches it
    "unresolvable",               # a resolution we can neither answer nor forward
    "reply_without_cie",
    "forwarded_by_stranger",      # a forwarded request from a station we do not trust
    "spoofed_requester",          # a request claiming an address registered elsewhere
    "own_address",                # a request whose requester is our own address
    "indication_from_stranger",
    "indication_without_packet",
    "bug",                        # a handler raised: counted, the node goes on
)
