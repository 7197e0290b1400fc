"""`xdmvpn lab`: a hub and N spokes in network namespaces on this machine.

topology  the plan (names, addresses) and each node's configuration; pure
network   building and removing the namespaces, links, addresses, routes
          (with the namespace helpers of xdmvpn.netns)
xdp       the pass program the underlay bridge's veth ports need
runner    the node daemons: start, find, stop, wait until registered
probe     `lab ping` (per-packet path from the hub's counters, echoes by
          xdmvpn.pinger) and `lab status`
manage    up, load, down (with leftovers of a crashed lab)
vm        Debian's stock kernel in a VM (ip_gre, ESP): `lab up --vm`, `lab vm`, the VM tier

Usage, addressing and output: docs/lab.md.
"""
