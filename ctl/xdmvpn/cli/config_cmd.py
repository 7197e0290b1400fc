"""`xdmvpn config check|show`: validate a node's TOML configuration, print it normalized."""

from __future__ import annotations

import argparse
import json
import sys

from ..config import ConfigError, NodeConfig, load, render_toml

EXAMPLES = """\
examples:
  xdmvpn config check /etc/xdmvpn/dmvpn0.toml
      one line: ok with role, tunnel and counts, or FILE:LINE: KEY: what is wrong
  xdmvpn config check lab/*.toml
      check every node of a lab at once
  xdmvpn config show docs/examples/spoke1.toml
      the configuration with every default written out, as TOML
  xdmvpn config show --json hub.toml | jq .nhrp.holdtime
      the same as JSON

Exit status: 0 when every file is valid, 2 when one is not (or cannot be read).
Keys, defaults and their VyOS/FRR/Cisco equivalents: docs/config.md."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check or show a node configuration (TOML)",
                       description="Check a node configuration file, or print it normalized "
                                   "(every default filled in).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    check = actions.add_parser("check", help="validate configuration files",
                               description="Validate each FILE; print one line per file.",
                               epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("files", nargs="+", metavar="FILE", help="node configuration (TOML)")
    check.set_defaults(func=run_check)
    show = actions.add_parser("show", help="print a configuration normalized",
                              description="Print FILE with every default filled in.",
                              epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("file", metavar="FILE", help="node configuration (TOML)")
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(func=run_show)


def summary(cfg: NodeConfig) -> str:
    """'hub, tunnel dmvpn0 10.0.0.1/24, 0 nhs, 2 maps'."""
    maps = len(cfg.nhrp.maps)
    return (f"{cfg.role}, tunnel {cfg.tunnel.name} {cfg.tunnel.address}, "
            f"{len(cfg.nhrp.nhs)} nhs, {maps} map{'s' * (maps != 1)}")


def run_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            cfg = load(path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)       # FILE:LINE: KEY: ..., as compilers print it
            status = 2
        else:
            print(f"{path}: ok ({summary(cfg)})")
    return status


def run_show(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(cfg.to_dict(), indent=2))
    else:
        sys.stdout.write(render_toml(cfg))
    return 0
