"""`xdmvpn decode`: NHRP packets of capture files, as lines or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from ..nhrp import NhrpDecodeError, decode, encode
from ..nhrp.codec import protocol_warnings
from ..nhrp.jsonview import packet_summary, packet_to_dict

EXAMPLES = """\
examples:
  xdmvpn decode tests/vectors/nhrp-trace.pcap
      one line per NHRP packet
  xdmvpn decode --json hub.pcapng | jq 'select(.type == 8)'
      one JSON object per NHRP packet; here only traffic indications
  tcpdump -i eth0 -w - 'ip proto 47 or ip proto 54' | xdmvpn decode /dev/stdin
      decode a live capture (NHRP in GRE, and NHRP directly in IP)

Exit status: 0 when every NHRP packet decoded, 1 when some did not (each is
reported with its frame number and the field and offset at fault), 2 when a
file could not be read at all, 3 when a file holds no NHRP packet (and none
failed): one line on stderr says which file and how many frames it has."""

EXIT_FAILED, EXIT_NO_NHRP = 1, 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decode NHRP packets in pcap/pcapng captures",
                       description="Decode the NHRP packets (GRE protocol 0x2001, with or "
                                   "without key, or directly in IP: protocol 54) in pcap or "
                                   "pcapng capture files.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="pcap or pcapng capture")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per NHRP packet, one per line")
    p.add_argument("--strict", action="store_true",
                   help="report well-formed packets a node must not act on (hop count 0) "
                        "as errors instead of listing them under 'warnings'")
    p.set_defaults(func=run)


def decode_frame(frame, *, strict: bool = False) -> dict:
    """The JSON object for one captured NHRP frame."""
    head = {"frame": frame.frame, "src": frame.src, "dst": frame.dst, "gre_key": frame.gre_key,
            "carrier": frame.carrier}
    if frame.error:
        return {**head, "error": frame.error}
    try:
        pkt = decode(frame.payload, strict=strict)
    except NhrpDecodeError as exc:
        return {**head, "error": f"NHRP {exc}"}
    out = {**head, **packet_to_dict(pkt)}
    out["warnings"] = protocol_warnings(pkt)
    out["reencode_identical"] = encode(pkt) == frame.payload[:pkt.packet_size]
    out["_summary"] = packet_summary(pkt)
    return out


def run(args: argparse.Namespace) -> int:
    from ..capture import NhrpCapture   # scapy is slow to import: only when needed

    failed = empty = False
    many = len(args.files) > 1
    for path in args.files:
        capture = NhrpCapture(path)
        found = 0
        for frame in capture:
            found += 1
            obj = decode_frame(frame, strict=args.strict)
            summary = obj.pop("_summary", None)
            if many:
                obj = {"file": path, **obj}
            failed |= "error" in obj
            if args.json:
                print(json.dumps(obj, sort_keys=False))
            else:
                where = f"{path}:" if many else ""
                route = f"{obj['src'] or '-'} > {obj['dst'] or '-'}"
                how = (" proto=54" if obj["carrier"] == "ip" else
                       f" key={obj['gre_key']}" if obj["gre_key"] is not None else "")
                text = f"ERROR {obj['error']}" if "error" in obj else summary
                for warning in obj.get("warnings", ()):
                    text += f"  WARNING {warning}"
                print(f"{where}{obj['frame']:>5} {route}{how}  {text}")
        if not found:
            sys.stdout.flush()
            n = capture.frames
            print(f"xdmvpn: {path}: no NHRP packet in {n} frame{'s' * (n != 1)} (looked for "
                  "GRE protocol 0x2001 and IP protocol 54)", file=sys.stderr)
            empty = True
    sys.stdout.flush()
    return EXIT_FAILED if failed else EXIT_NO_NHRP if empty else 0
