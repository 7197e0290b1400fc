"""A lab's life: `up` (namespaces, configurations, daemons, routes), `load` (the lab that
is up), `down` (everything, also what a crashed lab left behind).

State lives in /run/xdmvpn/<name>/: lab.json (the plan's parameters), NODE.toml, NODE.log,
NODE.pid, and with --ipsec charon-NODE/ (that node's charon: configuration, log, pid). The
lab name is "lab" unless $XDMVPN_LAB_NAME says otherwise (tests use their own, so that they
never touch a lab a user has up)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .. import netns
from ..errors import XdmvpnError
from ..ipsec.charon import start_charon, stop_charon
from . import network, runner
from .topology import (DEFAULT_NAME, NAME_ENV, STATE_ROOT, TUNNEL, Topology, check_name,
                       label, leftover_pattern, node_configs, plan)

PINS = Path("/sys/fs/bpf/xdmvpn")
SOCKETS = Path(STATE_ROOT)
STATE_FILE = "lab.json"
CHARON_DIR = "charon-"              # + node name: a node's charon (--ipsec), under the state


def lab_name(name: str | None = None) -> str:
    return check_name(name or os.environ.get(NAME_ENV) or DEFAULT_NAME)


def need_root() -> None:
    if os.geteuid() != 0:
        raise XdmvpnError("xdmvpn lab needs root (network namespaces, BPF)")


def leftovers(name: str) -> dict:
    """What a lab called name has on this machine: namespaces, daemons, pins, sockets,
    state directory (each possibly left by a crash)."""
    pattern = leftover_pattern(name)
    state = Path(STATE_ROOT) / name

    def matching(directory: Path, suffix: str = "") -> list[Path]:
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir()
                      if p.name.endswith(suffix)
                      and pattern.fullmatch(p.name[:len(p.name) - len(suffix)]))
    return {"namespaces": network.existing(name), "daemons": runner.find(str(state)),
            "pins": matching(PINS), "sockets": matching(SOCKETS, ".sock"),
            "state": state if state.exists() else None}


def load(name: str | None = None) -> Topology:
    """The lab that is up, as planned by `up`."""
    need_root()
    name = lab_name(name)
    path = Path(STATE_ROOT) / name / STATE_FILE
    try:
        saved = json.loads(path.read_text())
        return plan(int(saved["spokes"]), name,
                    tuple(tuple(int(i) for i in g) for g in saved.get("nat", [])),
                    saved.get("family", "ipv4"), saved.get("nbma", "ipv4"))
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError):
        raise XdmvpnError(f"{path} is damaged: run `xdmvpn lab down`") from None
    left = network.existing(name)
    if left:
        raise XdmvpnError(f"{label(name)} is half there (namespaces {', '.join(left)}, no "
                          f"{path}): run `xdmvpn lab down`")
    raise XdmvpnError(f"{label(name)} is not up (start it with `xdmvpn lab up`)")


def up(spokes: int, name: str | None = None, timeout: float = 60.0,
       daemons: bool = True, ipsec: bool = False,
       nat: tuple[tuple[int, ...], ...] = (), family: str = "ipv4",
       nbma: str = "ipv4") -> tuple[Topology, float]:
    """Build the lab (nat: groups of spoke indexes, each behind a NAT device of its own;
    family/nbma: the overlay and underlay families); with daemons, start them (with ipsec,
    a charon in every node first), wait until every spoke is registered and add the
    routes. Returns the topology and the seconds the daemons took to be ready."""
    topo = plan(spokes, lab_name(name), nat, family, nbma)   # bad arguments: said first
    if ipsec and topo.nbma != "ipv4":
        raise XdmvpnError("--ipsec needs --nbma ipv4 (IPsec over an IPv6 underlay is not "
                          "supported yet)")
    need_root()
    configs = node_configs(topo, ipsec=ipsec)
    found = leftovers(topo.name)
    if any(found.values()):
        what = (found["namespaces"][:1] or [f"pid {p}" for p in found["daemons"][:1]]
                or [str(x) for x in found["pins"][:1] + found["sockets"][:1]]
                or [str(found["state"])])[0]
        raise XdmvpnError(f"{label(topo.name)} is already up ({what} exists): run "
                          "`xdmvpn lab down` first")
    if daemons and not shutil.which("nsenter"):
        raise XdmvpnError("nsenter is missing (Debian: apt-get install util-linux)")
    if topo.nats and not shutil.which("nft"):
        raise XdmvpnError("nft is missing, the NAT devices need it (Debian: apt-get install "
                          "nftables)")
    state = Path(topo.state_dir)
    try:
        state.mkdir(parents=True, mode=0o700)
    except FileExistsError:                     # another `lab up` got there first
        raise XdmvpnError(f"{label(topo.name)} is already up ({state} exists): run "
                          "`xdmvpn lab down` first") from None
    try:
        (state / STATE_FILE).write_text(json.dumps(dict(topo.to_dict(), ipsec=ipsec)) + "\n")
        for node in topo.nodes:
            Path(topo.config_path(node)).write_text(configs[node.name])
        network.build(topo)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    if not daemons:
        return topo, 0.0
    if ipsec:
        try:
            for node in topo.nodes:
                start_charon(topo.ns(node), state / f"{CHARON_DIR}{node.name}")
        except XdmvpnError as exc:
            raise XdmvpnError(f"{exc}; the lab stays up for a look, `xdmvpn lab down` "
                              "removes it") from None
    procs = {node.name: runner.start(topo, node) for node in topo.nodes}
    try:
        took = runner.wait_ready(topo, procs, timeout)
        network.add_routes(topo, TUNNEL)
        runner.wait_routes(topo)
    except XdmvpnError as exc:
        raise XdmvpnError(f"{exc}; the lab stays up for a look, `xdmvpn lab down` "
                          "removes it") from None
    return topo, took


def down(name: str | None = None) -> dict:
    """Stop the daemons (SIGTERM: they purge their registrations), then remove namespaces,
    pinned maps, sockets and the state directory. Returns what it removed."""
    need_root()
    name = lab_name(name)
    found = leftovers(name)
    state = Path(STATE_ROOT) / name
    stopped = runner.stop(found["daemons"], str(state))
    charons = sum(stop_charon(d) for d in sorted(state.glob(f"{CHARON_DIR}*")))
    netns.delete(*found["namespaces"])
    left = leftovers(name)                  # pins and sockets: as the daemons left them
    removed: dict[str, set[Path]] = {"pins": set(), "sockets": set()}
    deadline = time.monotonic() + 2.0       # a dying loader child may finish one last pin
    while True:
        for pin in left["pins"]:
            shutil.rmtree(pin, ignore_errors=True)
        for sock in left["sockets"]:
            sock.unlink(missing_ok=True)
        removed["pins"].update(left["pins"])
        removed["sockets"].update(left["sockets"])
        shutil.rmtree(state, ignore_errors=True)
        left = leftovers(name)
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if any(left.values()):
        raise XdmvpnError(f"{label(name)}: could not remove everything: " + ", ".join(
            f"{k} {v}" for k, v in left.items() if v))
    return {"name": name, "daemons": stopped, "charons": charons,
            "namespaces": found["namespaces"],
            "pins": [str(p) for p in sorted(removed["pins"])],
            "sockets": [str(s) for s in sorted(removed["sockets"])],
            "state": None if found["state"] is None else str(found["state"])}
