"""The parts of `xdmvpn bench control` (entry point: xdmvpn_bench/control.py): lab
(namespaces, daemons, small measures), registration (on the wire), shortcut (phase 3)."""
