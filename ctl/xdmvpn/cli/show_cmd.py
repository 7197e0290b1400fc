"""`xdmvpn show ...` and `xdmvpn clear ...`: ask a running node over its control socket."""

from __future__ import annotations

import argparse
import json
import os

from .. import control, show
from ..config import SOCKET_DIR

#: The daemon `show` and `clear` ask when neither --socket nor --instance says: its
#: control.instance. `xdmvpn lab exec NODE` sets it to NODE's instance.
INSTANCE_ENV = "XDMVPN_INSTANCE"
DEFAULT_INSTANCE = "dmvpn0"

EXAMPLES = """\
examples:
  xdmvpn show cache                    every family's cache (VyOS/Cisco columns)
  xdmvpn show ip nhrp cache            IPv4 rows only (Cisco's show ip nhrp)
  xdmvpn show ipv6 nhrp cache --json   IPv6 rows only (Cisco's show ipv6 nhrp)
  xdmvpn show ipv6 shortcut            "nhrp" may be left out
  xdmvpn show nhs --json               show ip nhrp nhs, FRR's JSON keys
  xdmvpn show shortcut                 show ip nhrp shortcut
  xdmvpn show dmvpn                    show dmvpn: one line per peer
  xdmvpn show stats --json             data-plane counters, NHRP counters, mappings
  xdmvpn show cache --instance lab-hub   another daemon (its control.instance)
  xdmvpn show cache --socket /run/xdmvpn/dmvpn0.sock
  XDMVPN_INSTANCE=lab-hub xdmvpn show cache   the same as --instance lab-hub
  xdmvpn lab exec spoke1 -- xdmvpn show shortcut   the lab node's own daemon

JSON output of cache, nhs, shortcut and dmvpn is a list (empty when there is nothing).
A family word (ip or ipv4, ipv6) keeps the rows of that overlay family."""

FAMILIES = {"ip": 4, "ipv4": 4, "ipv6": 6}

CLEAR_EXAMPLES = """\
examples:
  xdmvpn clear shortcut      drop every shortcut (peers that resolved us drop theirs)
  xdmvpn clear cache         also drop dynamic, cached and negative entries
  xdmvpn clear cache --instance lab-hub"""

VIEWS = {
    "cache": (show.cache_json, show.cache_table),
    "nhs": (show.nhs_json, show.nhs_table),
    "shortcut": (show.shortcut_json, show.shortcut_table),
    "dmvpn": (show.dmvpn_json, show.dmvpn_table),
}


def _target(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--socket", metavar="PATH", help="control socket of the daemon")
    g.add_argument("--instance", metavar="NAME",
                   help="daemon's control.instance: socket "
                        f"{SOCKET_DIR}/NAME.sock (default ${INSTANCE_ENV}, else "
                        f"{DEFAULT_INSTANCE})")


def socket_path(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    instance = args.instance or os.environ.get(INSTANCE_ENV) or DEFAULT_INSTANCE
    return f"{SOCKET_DIR}/{instance}.sock"


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("show", help="show NHRP cache, NHS, shortcuts, DMVPN peers, stats",
                       description="Show the state of a running node.", epilog=EXAMPLES,
                       formatter_class=fmt)
    p.add_argument("words", nargs="+", metavar="WHAT",
                   help=f"[ip|ipv6] [nhrp] and one of {', '.join((*VIEWS, 'stats'))}")
    p.add_argument("--json", action="store_true", help="JSON (FRR's keys)")
    _target(p)
    p.set_defaults(func=run_show, parser=p)
    c = sub.add_parser("clear", help="clear NHRP cache entries or shortcuts",
                       description="Clear dynamic state of a running node.",
                       epilog=CLEAR_EXAMPLES, formatter_class=fmt)
    c.add_argument("what", choices=("cache", "shortcut"))
    _target(c)
    c.set_defaults(func=run_clear)


def parse_words(words: list[str]) -> tuple[int | None, str]:
    """["ipv6", "nhrp", "cache"] -> (6, "cache"); ValueError with the reason otherwise."""
    rest = list(words)
    family = FAMILIES.get(rest[0]) if rest else None
    if family is not None:
        rest.pop(0)
    if rest[:1] == ["nhrp"]:
        rest.pop(0)
    if len(rest) != 1 or rest[0] not in (*VIEWS, "stats"):
        raise ValueError(f"show what? {' '.join(words)!r}: say [ip|ipv6] [nhrp] and one of "
                         f"{', '.join((*VIEWS, 'stats'))}")
    if family is not None and rest[0] == "stats":
        raise ValueError("stats has no family: say `show stats`")
    return family, rest[0]


def run_show(args: argparse.Namespace) -> int:
    try:
        family, args.what = parse_words(args.words)
    except ValueError as exc:
        args.parser.error(str(exc))
    path = socket_path(args)
    if args.what == "stats":
        out = control.request(path, {"cmd": "stats"})
        out.pop("ok", None)
        print(json.dumps(out, indent=2) if args.json else _stats_text(out))
        return 0
    snap = control.request(path, {"cmd": "snapshot"})["snapshot"]
    as_json, as_table = VIEWS[args.what]
    print(json.dumps(as_json(snap, family), indent=2) if args.json else as_table(snap, family),
          end="\n")
    return 0


def _stats_text(st: dict) -> str:
    rows = [(name, c["packets"], c["bytes"]) for name, c in st["paths"].items() if c["packets"]]
    rows += [(f"drop {name}", c["packets"], c["bytes"]) for name, c in st["drops"].items()
             if c["packets"]]
    out = show.render_table(("Counter", "Packets", "Bytes"), rows)
    nhrp = [(k, v) for k, v in st["nhrp"].items()]
    out += "\n\n" + show.render_table(("NHRP", "Count"), nhrp)
    # the controller's own counters: GRE datagrams received and dropped by the kernel on a
    # full socket buffer, route writes, control-socket errors, faults
    daemon = [(k, v) for k, v in sorted(st.get("daemon", {}).items())
              if isinstance(v, int) and v]
    return out + "\n\n" + show.render_table(("Daemon", "Count"), daemon)


def run_clear(args: argparse.Namespace) -> int:
    out = control.request(socket_path(args), {"cmd": "clear", "what": args.what})
    print(f"cleared {out['cleared']} entr{'y' if out['cleared'] == 1 else 'ies'}")
    return 0
