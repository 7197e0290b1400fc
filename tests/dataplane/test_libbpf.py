"""The one libbpf loader (xdmvpn.dataplane.libbpf) on real programs: program info, the ring
buffer's epoll descriptor the daemon sleeps on, and a missing function as one line."""

from __future__ import annotations

import os

import pytest

from conftest import Harness
from xdmvpn.daemon.events import ring_epoll_fd
from xdmvpn.dataplane import libbpf
from xdmvpn.errors import XdmvpnError


@pytest.fixture(scope="module")
def harness(fx_ns):
    h = Harness(fx_ns, gre_key=42)
    yield h
    h.close()


@pytest.mark.root
def test_prog_info_of_loaded_programs(harness):
    info = libbpf.prog_info(harness.progs["xdmvpn_xdp_pass"].fd)
    assert info["name"] == "xdmvpn_xdp_pass"[:15]          # the kernel keeps 15 characters
    assert info["verified_insns"] == 2 and info["jited_bytes"] > 0
    underlay = libbpf.prog_info(harness.progs["xdmvpn_xdp_underlay"].fd)
    assert 2 < underlay["verified_insns"] < 1000 and underlay["xlated_bytes"] > 0


@pytest.mark.root
def test_the_ring_buffer_has_an_epoll_descriptor(harness):
    harness.maps.events(0)                                # opens the ring buffer, as the daemon
    fd = ring_epoll_fd(harness.module)
    assert fd is not None and os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"


def test_a_missing_function_is_one_line(monkeypatch):
    monkeypatch.setitem(libbpf.PROTOTYPES, "xdmvpn_no_such_call", (None, []))
    with pytest.raises(XdmvpnError) as info:
        libbpf.function("xdmvpn_no_such_call")
    assert str(info.value) == ("xdmvpn_no_such_call not found: libbpf is missing or too old "
                               "(Debian: apt-get install libbpf1, which comes with bcc)")
