"""The metrics endpoint of `xdmvpn run` (`[metrics] listen`): prometheus_client's threaded
HTTP server, its registry holding the DMVPN collector and the process collector. Any path
answers (Prometheus scrapes /metrics)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from ..errors import XdmvpnError
from ..view import ViewSource
from .collector import DmvpnCollector

log = logging.getLogger("xdmvpn")


class MetricsServer:
    def __init__(self, httpd, thread, listen: str):
        self.httpd, self.thread, self.listen = httpd, thread, listen

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def start(m, source: ViewSource) -> MetricsServer | None:
    """Serve the metrics of the node `source` gives views of, when its configuration's
    [metrics] section `m` has a listen address; a bind failure is one XdmvpnError line."""
    if m.listen is None:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DmvpnCollector(source))
    ProcessCollector(registry=registry)
    try:
        httpd, thread = start_http_server(m.port, m.host, registry)
    except OSError as exc:
        raise XdmvpnError(f"metrics.listen {m.listen}: cannot listen "
                          f"({exc.strerror or exc})") from None
    log.info("metrics on http://%s/metrics", m.listen)
    return MetricsServer(httpd, thread, m.listen)
