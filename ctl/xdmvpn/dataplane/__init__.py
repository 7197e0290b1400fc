"""eBPF data plane: build, attach, maps API, test-run harness, benchmark."""
