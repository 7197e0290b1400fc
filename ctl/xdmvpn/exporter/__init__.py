"""Prometheus exporter of `xdmvpn run` (docs/metrics.md).

`labels`: the fixed label values; `sample`: what one scrape reads through the node's
state view (xdmvpn.view), on the daemon's loop thread; `histogram`: the shortcut set-up latency histogram; `collector`: the custom
collector that turns a sample into metric families; `server`: the HTTP endpoint."""
