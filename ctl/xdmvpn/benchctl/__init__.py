"""The parts of `xdmvpn bench control` (entry point: xdmvpn/bench_control.py)."""
