"""`xdmvpn bench`: benchmarks printing JSON, the last line one object with the figures."""

from __future__ import annotations

import argparse
import importlib
import json

# name -> module with run(args) -> dict
BENCHES = {
    "codec": "xdmvpn.bench_codec",
    "control": "xdmvpn.bench_control",
    "dataplane": "xdmvpn.dataplane.bench",
    "fuzz": "xdmvpn_bench.fuzz",
}

EXAMPLES = """\
examples:
  xdmvpn bench codec --json
      NHRP decode/encode cost per packet against a struct.unpack baseline
  xdmvpn bench control --json
      hub registrations/s on the wire (10,000 spokes), RSS per entry, shortcut setup ms (root)
  xdmvpn bench dataplane --json
      BPF program cost per packet (live frames, restored each run, counters
      checked), hub hairpin vs kernel forwarding, verifier figures (root)"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print its figures as JSON",
                       description="Run a benchmark. With --json the last line of output is "
                                   "one JSON object with the figures.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(BENCHES), help="what to measure")
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="minimum measuring time per figure (default 1.0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHES[args.name])
    result = module.run(args)
    if not args.json:
        for key, value in result.items():
            print(f"{key:32} {value}")
    print(json.dumps(result, sort_keys=True))
    return 0
