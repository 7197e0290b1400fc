"""docs/metrics.md lists every metric the exporter emits (and nothing else), and the
Grafana dashboard queries only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from test_collector import fake_daemon
from xdmvpn.exporter import labels as L
from xdmvpn.exporter.collector import DmvpnCollector

REPO = Path(__file__).resolve().parents[2]


def emitted() -> dict[str, str]:
    """{exposed name: type}, counters with _total, from a scrape with every option on."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DmvpnCollector(fake_daemon(per_peer=True, limit=2, peers=3, ipsec=True)))
    ProcessCollector(registry=reg)
    out = {}
    for f in text_string_to_metric_families(generate_latest(reg).decode()):
        out[f.name + "_total" if f.type == "counter" else f.name] = f.type
    return out


def test_docs_list_every_metric():
    text = (REPO / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(dmvpn_[a-z_]+)` \|", text, re.M))
    ours = {n for n in emitted() if n.startswith("dmvpn_")}
    assert documented == ours, (documented - ours, ours - documented)


def test_docs_name_every_label_value_of_the_counters():
    """Each reason, table and result the exporter can label a counter with is in the docs."""
    text = (REPO / "docs" / "metrics.md").read_text()
    for values in (L.NHRP_DROPS, L.CAPS, L.GRE_DISCARDS, L.CONTROL_ERRORS, L.ROUTE_RESULTS,
                   L.ROUTE_LOOKUP_ERRORS, L.ROUTE_RESYNCS, L.FAULTS):
        missing = [v for v in values if f"`{v}`" not in text]
        assert not missing, missing


def test_dashboard_queries_existing_metrics():
    dash = json.loads((REPO / "exporters" / "grafana-dashboard.json").read_text())
    names = emitted()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    assert len(exprs) > 20
    for expr in exprs:
        for name in re.findall(r"\b((?:dmvpn|process)_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert name in names or names.get(base) == "histogram", (name, expr)
    assert "docs/metrics.md" in dash["description"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_readme_and_docs_point_at_each_other():
    readme = (REPO / "exporters" / "README.md").read_text()
    assert "ctl/xdmvpn/exporter" in readme and "grafana-dashboard.json" in readme
    assert "exporters/grafana-dashboard.json" in (REPO / "docs" / "metrics.md").read_text()
