"""xdmvpn's benchmarks and measurement harnesses (import name ``xdmvpn_bench``).

Kept apart from the product package ``xdmvpn``: nothing here is imported by the daemon,
the CLI's product commands or the lab. ``xdmvpn bench NAME`` runs
``xdmvpn_bench.NAME.run(args)``, which returns a dict of figures (printed as JSON)."""
