"""Prometheus exporter of `xdmvpn run` (docs/metrics.md).

`labels`: the fixed label values; `sample`: what one scrape reads, on the daemon's loop
thread; `histogram`: the shortcut set-up latency histogram; `collector`: the custom
collector that turns a sample into metric families; `server`: the HTTP endpoint."""
