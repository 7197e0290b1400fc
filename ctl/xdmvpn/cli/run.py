"""`xdmvpn run --config FILE`: run one node (hub, spoke or both) in the foreground."""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import load

EXAMPLES = """\
examples:
  xdmvpn run --config /etc/xdmvpn/dmvpn0.toml
      run the node; logs go to stderr (journald under systemd)
  xdmvpn run --config hub.toml --log-level debug
      also log every mapping change
  xdmvpn run --config spoke.toml --keep-dataplane
      on SIGTERM, leave forwarding running (pinned maps) for the next start to adopt:
      what the systemd unit does, so a restart drops no packet

Signals: SIGTERM/SIGINT stop (purge our bindings at peers and NHSs, remove our routes,
detach the data plane, unless --keep-dataplane); SIGHUP reloads the configuration file
without losing state (tunnel address, interface, key, instance and metrics listen address
need a restart). Talk to a running node with `xdmvpn show` and `xdmvpn clear`; with
[metrics] listen, Prometheus metrics are served there (docs/metrics.md)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a node (NHRP daemon and data plane)",
                       description="Run one DMVPN node in the foreground.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", required=True, metavar="FILE",
                   help="node configuration (TOML, see docs/config.md)")
    p.add_argument("--keep-dataplane", action="store_true",
                   help="on exit leave the data plane forwarding (controller restart)")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..daemon.service import run as run_daemon, need_root
    need_root()
    cfg = load(args.config)          # ConfigError: FILE:LINE: KEY: ..., exit 2
    # debug is for xdmvpn's own loggers; pyroute2 logs every netlink message at debug
    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=max(level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("xdmvpn").setLevel(level)
    return run_daemon(cfg, args.config, keep_dataplane=args.keep_dataplane)
