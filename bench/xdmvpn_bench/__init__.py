"""xdmvpn's benchmarks and measurement harnesses (import name ``xdmvpn_bench``).

Kept apart from the product package ``xdmvpn``: nothing here is imported by the daemon,
the CLI's product commands or the lab (tests/test_product_layout.py checks).
``xdmvpn bench NAME`` runs ``xdmvpn_bench.NAME.run(args)``, which returns a dict of
figures (printed as JSON).

benchmarks   codec (NHRP decode/encode), control (registrations on the wire, memory,
             shortcut setup; parts in ctl/), dataplane (ns per packet, verifier figures;
             hub pps in forwarding), flood (a hub under a random-source NHRP flood;
             its generator in flood_gen), fuzz (the NHRP codec and engine under mutation)
harnesses    testrun (the kernel's BPF test-run: run, run_live), packets (hand-built
             frames), both also used by tests/dataplane; daemons (`xdmvpn run` processes
             in namespaces), also used by tests/daemon/topo.py
"""
