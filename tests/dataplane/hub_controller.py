"""A stand-alone controller process for the lab's hub (test_restart.py runs it).

    python hub_controller.py NETNS PIN_NAME

Starts (or adopts) the hub's data plane inside NETNS with the lab's settings,
prints the mappings it found in the pinned maps ("adopted ..."), programs the
hub's mappings, prints "ready" and sleeps until it is killed.
"""

from __future__ import annotations

import sys
import time


def main(ns: str, pin_name: str) -> None:
    from xdmvpn.netns import in_netns
    from xdmvpn.dataplane.tunnel import TunnelDataplane

    with in_netns(ns):
        dp = TunnelDataplane(name="dmvpn0", underlay="ul0", local_nbma="192.0.2.1", gre_key=42,
                             redirect=True, trigger_interval_ms=60000, pin_name=pin_name)
        dp.start()
    found = sorted(f"{m.prefix}={m.nbma}" for m in dp.maps.mappings())
    print("adopted " + ",".join(found), flush=True)
    dp.maps.add_mapping("10.0.0.2", "192.0.2.2")
    dp.maps.add_mapping("10.0.0.3", "192.0.2.3")
    dp.maps.set_multicast(["192.0.2.2", "192.0.2.3"])
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
