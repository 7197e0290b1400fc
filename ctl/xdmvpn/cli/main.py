"""`xdmvpn` entry point: argparse subcommands, one-line errors, no tracebacks for user errors."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import XdmvpnError

# Each module named here provides register(subparsers) -> None; the parser it adds
# sets `func` to a callable taking the parsed args and returning an exit status.
COMMAND_MODULES = (
    "xdmvpn.cli.decode",
    "xdmvpn.cli.config_cmd",
    "xdmvpn.cli.bench",
    "xdmvpn.cli.lab",
    "xdmvpn.cli.run",
    "xdmvpn.cli.show_cmd",
)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (argparse prints the usage block first); the
    subcommands' parsers are of this class too."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="xdmvpn",
        description="DMVPN for Linux: NHRP control plane, mGRE data plane in eBPF.",
        epilog="Run 'xdmvpn COMMAND --help' for the examples of each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xdmvpn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except XdmvpnError as exc:
        print(f"xdmvpn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `xdmvpn decode ... | head`: the reader went away, nothing left to say.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
