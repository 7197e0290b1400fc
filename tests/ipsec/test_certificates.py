"""IKE with X.509 certificates (one throw-away CA) between real daemons and charons: the
identity is the certificate's subject, the "tunnel-address" binding reads its CN, a spoke
whose CN is not its tunnel address is refused. Needs root."""

from __future__ import annotations

import json

import pytest

from pki import O, ipsec_lines, make_ca, make_node
from topo import Topology

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("certs")
    ca = make_ca(tmp / "pki")
    extra = {}
    for name, cn in (("hub1", "172.16.0.1"), ("spoke1", "172.16.0.11"),
                     ("spoke2", "spoke2.example.net")):
        crt, key = make_node(tmp / "pki", ca, name, cn)
        extra[name] = ipsec_lines(crt, key, ca[0])
    t = Topology(tmp, spokes=2, ipsec=True, ipsec_extra=extra)
    try:
        t.start_all()
        yield t
    finally:
        t.close()


def test_certificate_identities_and_cn_binding(lab):
    lab.wait_for(lambda: lab.registered("spoke1"), 30, message="spoke1 registered")
    est = lab.wait_for(lambda: len(lab.established("hub1")) == 2 and lab.established("hub1"),
                       30, message="both IKE_SAs at the hub")
    assert est == {lab.nbma("spoke1"): f"O={O}, CN=172.16.0.11",
                   lab.nbma("spoke2"): f"O={O}, CN=spoke2.example.net"}
    assert lab.established("spoke1")[lab.nbma("hub1")] == f"O={O}, CN=172.16.0.1"
    rows = {r["protocol"]: r for r in json.loads(lab.cli("hub1", "show", "cache", "--json")
                                                 .stdout)}
    assert rows["172.16.0.11"]["identity"] == f"O={O}, CN=172.16.0.11"
    assert "172.16.0.12" not in rows
    lab.wait_for(lambda: lab.snapshot("spoke2")["nhs"][0]["last_error"] == 4, 20,
                 message="spoke2 refused: its CN is not its tunnel address")
    assert lab.ask("hub1", "stats")["ipsec"]["identity_refused"] >= 1
