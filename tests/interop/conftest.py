"""One DMVPN cloud of both implementations for every interop test (module files are the
scenarios of docs/interop.md), built once per session: each xdmvpn daemon compiles its
data plane, minutes under the VM tier's emulation.

    hub1   xdmvpn                      hub2   FRR, `ip nhrp redirect` + NFLOG rule
    spoke1 FRR, `nhs dynamic` to hub1 and hub2
    spoke2 xdmvpn, NHS hub1 (priority 1) and hub2 (priority 2); 10.0.4.0/24 via hub2
    spoke3 FRR, static NHS hub1
    spoke4 xdmvpn, NHS hub2

Spokes route 10.0.0.0/16 (FRR spokes also the overlay 172.16.0.0/24) via their first hub,
hubs each registered spoke's LAN via it (Mixed.add_routes)."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# topo.py (the namespaces-and-daemons helper) lives with the daemon tests
sys.path.insert(0, str(HERE.parent / "daemon"))
sys.path.insert(0, str(HERE))

from mixed import Mixed, Node  # noqa: E402

CLOUD = {
    "hub1": Node("xdmvpn"),
    "hub2": Node("frr"),
    "spoke1": Node("frr", ("hub1", "hub2"), dynamic=True),
    "spoke2": Node("xdmvpn", ("hub1", "hub2"), routes=(("10.0.4.0/24", "hub2"),)),
    "spoke3": Node("frr", ("hub1",)),
    "spoke4": Node("xdmvpn", ("hub2",)),
}


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    lab = Mixed(tmp_path_factory.mktemp("interop"), CLOUD)
    try:
        lab.start_all()
        lab.wait_for(lambda: all(lab.registered_at(s, h) for s in lab.nodes
                                 if s.startswith("spoke") for h in CLOUD[s].nhs), 60,
                     message="every spoke registered at each of its hubs")
        print(f"interop cloud up in {lab.started_in:.0f} s")
        yield lab
    finally:
        lab.close()
