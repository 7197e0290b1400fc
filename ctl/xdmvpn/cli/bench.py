"""`xdmvpn bench NAME`: runs ``xdmvpn_bench.NAME.run(args) -> dict`` and prints the figures,
the last line one JSON object. The benchmarks live apart from the product, in the
xdmvpn_bench package (bench/ in the repository); none is imported until asked for."""

from __future__ import annotations

import argparse
import importlib
import json

from ..errors import XdmvpnError

PACKAGE = "xdmvpn_bench"
# name -> module with run(args) -> dict
BENCHES = {
    "codec": "xdmvpn_bench.codec",
    "control": "xdmvpn_bench.control",
    "dataplane": "xdmvpn_bench.dataplane",
    "flood": "xdmvpn_bench.flood",
    "fuzz": "xdmvpn_bench.fuzz",
    "startup": "xdmvpn_bench.startup",
}

EXAMPLES = """\
examples:
  xdmvpn bench codec --json
      NHRP decode/encode cost per packet against a struct.unpack baseline
  xdmvpn bench control --json
      hub registrations/s on the wire (10,000 spokes), RSS per entry, shortcut setup ms (root)
  xdmvpn bench control --vs-frr --json
      FRR nhrpd and xdmvpn as hubs, same generator, 2,000 spokes: rates, resends,
      CPU, RSS and the ratios (root; in the VM where this kernel lacks ip_gre)
  xdmvpn bench dataplane --json
      BPF program cost per packet (live frames, restored each run, counters
      checked), hub hairpin vs kernel forwarding, verifier figures (root)
  xdmvpn bench flood --json
      a hub with registered spokes under a random-source NHRP flood (XDP live
      frames): flood rate, a spoke's reply p50/p99, state the flood created (root)
  xdmvpn bench fuzz --json
      the NHRP fuzzer's figures (see bench/xdmvpn_bench/fuzz.py)
  xdmvpn bench startup --json
      a hub's start-up time (loader child: compile, load) and idle RSS (root)
  bench/run
      every benchmark of the repository in turn, JSON on each one's last line"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print its figures as JSON",
                       description="Run a benchmark (module xdmvpn_bench.NAME). With --json "
                                   "the last line of output is one JSON object with the "
                                   "figures.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME",
                   help=f"what to measure: {', '.join(sorted(BENCHES))}")
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="minimum measuring time per figure (default 1.0)")
    p.add_argument("--vs-frr", action="store_true",
                   help="control only: FRR nhrpd and xdmvpn as hubs side by side (root; "
                        "boots the VM tier's kernel where this one has no ip_gre)")
    p.add_argument("options", nargs=argparse.REMAINDER, metavar="...",
                   help="the benchmark's own options (xdmvpn bench NAME --help lists them)")
    p.set_defaults(func=run)


def bench_module(name: str):
    """The module of benchmark `name`; XdmvpnError (one line) when there is none."""
    if name not in BENCHES:
        raise XdmvpnError(f"bench: no benchmark {name!r} (one of: {', '.join(sorted(BENCHES))})")
    try:
        importlib.import_module(PACKAGE)
    except ModuleNotFoundError:
        raise XdmvpnError(f"bench {name}: the benchmark package {PACKAGE} is not installed "
                          "(it comes with a checkout: ./setup.sh)") from None
    module = BENCHES[name]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise                               # the benchmark itself lacks something
        raise XdmvpnError(f"bench {name}: no module {module} (an older checkout? "
                          "./setup.sh)") from None


def own_options(name: str, module, args: argparse.Namespace) -> argparse.Namespace:
    """Parse the options after NAME with the benchmark's own `add_arguments(parser)` (when it
    has one) into `args`; an unknown option is a one-line usage error (exit 2)."""
    from .main import Parser
    parser = Parser(prog=f"xdmvpn bench {name}")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--seconds", type=float, default=args.seconds,
                        help="minimum measuring time per figure")
    parser.add_argument("--vs-frr", action="store_true",
                        help="control only: FRR nhrpd and xdmvpn as hubs side by side")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    return parser.parse_args(args.options, namespace=args)


def run(args: argparse.Namespace) -> int:
    module = bench_module(args.name)
    args = own_options(args.name, module, args)
    if getattr(args, "vs_frr", False) and args.name != "control":
        raise XdmvpnError(f"bench {args.name}: --vs-frr is for bench control only")
    result = module.run(args)
    if not args.json:
        for key, value in result.items():
            print(f"{key:32} {value}")
    print(json.dumps(result, sort_keys=True))
    return 0
