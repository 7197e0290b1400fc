"""sendmmsg/recvmmsg through ctypes (xdmvpn.mmsg), on real UDP sockets over loopback (the
same calls as on the raw GRE socket, without needing root), the daemon effects holding
sends for one batch, and the receive loop's parse of the common datagram."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings, strategies as st

from xdmvpn.daemon.effects import LiveEffects
from xdmvpn.daemon.receive import common_payload
from xdmvpn.mmsg import SO_RXQ_OVFL, RecvBatch, SendBatch
from xdmvpn.transport import gre_header, parse_gre_nhrp

LO = IPv4Address("127.0.0.1")


@pytest.fixture
def pair():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield tx, rx
    tx.close()
    rx.close()


def test_a_batch_goes_out_whole_with_its_header_in_order(pair):
    tx, rx = pair
    batch = SendBatch(b"GRE:", capacity=8, port=rx.getsockname()[1])
    for i in range(20):                      # more than the capacity: flushes by itself
        batch.add(tx.fileno(), LO, b"packet %d" % i)
    assert len(batch) == 4 and batch.sent == 16
    assert batch.flush(tx.fileno()) == 4 and len(batch) == 0
    got = []
    rb = RecvBatch(capacity=7, size=64)
    while len(got) < 20:
        part = rb.recv(rx.fileno())
        assert part and len(part) <= 7
        got += part
    assert [d for d, _, _ in got] == [b"GRE:packet %d" % i for i in range(20)]
    assert {src for _, src, _ in got} == {LO} and not any(t for _, _, t in got)
    assert rb.recv(rx.fileno()) == []        # nothing waits: no blocking
    assert batch.failed == 0 and batch.errors == {}


def test_a_long_datagram_comes_back_truncated_and_flagged(pair):
    tx, rx = pair
    tx.sendto(b"x" * 100, rx.getsockname())
    (data, src, truncated), = RecvBatch(capacity=2, size=10).recv(rx.fileno())
    assert data == b"x" * 10 and truncated and src == LO


def test_a_refused_datagram_is_counted_and_the_rest_still_go(pair):
    tx, rx = pair
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 0)
    batch = SendBatch(capacity=4, port=rx.getsockname()[1])
    batch.add(tx.fileno(), LO, b"one")
    batch.add(tx.fileno(), IPv4Address("255.255.255.255"), b"refused")   # EACCES
    batch.add(tx.fileno(), LO, b"three")
    assert batch.flush(tx.fileno()) == 2 and batch.failed == 1 and list(batch.errors) != []
    assert [d for d, _, _ in RecvBatch().recv(rx.fileno())] == [b"one", b"three"]


def test_the_kernels_drops_on_a_full_buffer_come_with_the_batch(pair):
    tx, rx = pair
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)       # a few datagrams only
    rx.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    rb = RecvBatch(capacity=64, size=256)
    assert rb.dropped == 0
    for i in range(200):
        tx.sendto(b"d%d" % i, rx.getsockname())
    got = rb.recv(rx.fileno())
    assert 0 < len(got) < 200
    # each datagram carries the count as it was when it was queued: the next one after
    # the drops says how many
    tx.sendto(b"later", rx.getsockname())
    assert [d for d, _, _ in rb.recv(rx.fileno())] == [b"later"]
    assert rb.dropped == 200 - len(got)        # every datagram read or counted
    tx.sendto(b"again", rx.getsockname())
    rb.recv(rx.fileno())
    assert rb.dropped == 200 - len(got)        # a running count, not a difference


class UdpGre:
    """Stands in for transport.GreSocket on a UDP socket (a raw GRE socket needs root)."""

    def __init__(self, sock, port):
        self.sock, self.port, self.sent = sock, port, 0

    def fileno(self):
        return self.sock.fileno()

    def send(self, nbma, packet):
        self.sock.sendto(packet, (str(nbma), self.port))
        self.sent += 1
        return True


def test_effects_hold_sends_until_the_batch_ends(pair):
    tx, rx = pair
    port = rx.getsockname()[1]
    fx = LiveEffects(UdpGre(tx, port), maps=None, routes=None)
    fx.send(LO, b"at once")                  # no batch configured: as always
    assert RecvBatch().recv(rx.fileno())[0][0] == b"at once"
    fx.send_batch = SendBatch(capacity=64, port=port)
    with fx.hold():
        for i in range(10):
            fx.send(LO, b"r%d" % i)
        with fx.hold():                       # nested: still one batch
            fx.send(LO, b"inner")
        assert RecvBatch().recv(rx.fileno()) == []      # nothing left yet
    got = RecvBatch().recv(rx.fileno())
    assert [d for d, _, _ in got] == [b"r%d" % i for i in range(10)] + [b"inner"]
    assert fx.gre.sent == 1 and fx.stats["send_failed"] == 0


class OrderedMaps:
    """Records the mapping writes, with how many datagrams had left before each."""

    def __init__(self, rx):
        self.rx, self.writes = rx, []

    def add_mappings(self, pairs):
        self.writes.append((list(pairs), len(RecvBatch().recv(self.rx.fileno()))))


def test_held_mappings_are_written_before_the_replies_that_leave_early(pair):
    tx, rx = pair
    port = rx.getsockname()[1]
    maps = OrderedMaps(rx)
    fx = LiveEffects(UdpGre(tx, port), maps=maps, routes=None)
    fx.send_batch = SendBatch(capacity=64, port=port)
    fx.flush_every = 2
    a, b = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    with fx.hold():
        fx.mapping_set(a, LO)
        fx.send(LO, b"reply a")
        assert maps.writes == []                    # held
        fx.mapping_set(b, LO)
        fx.send(LO, b"reply b")                     # the second: both leave now
        assert maps.writes == [([(a, LO), (b, LO)], 0)]    # written before they left
        assert [d for d, _, _ in RecvBatch().recv(rx.fileno())] == [b"reply a", b"reply b"]
        fx.send(LO, b"last")
    assert [d for d, _, _ in RecvBatch().recv(rx.fileno())] == [b"last"]
    assert fx.mapped == {a: LO, b: LO}


# an IPv4 header (20 bytes, total length 40, DF) + GRE with key 42 + 12 bytes of NHRP
_DATAGRAM = (bytes([0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 47, 0, 0, 198, 19, 0, 1, 198, 18, 0, 1])
             + gre_header(42) + bytes(range(12)))


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_DATAGRAM) - 1), st.integers(0, 255)),
                max_size=3),
       st.integers(0, len(_DATAGRAM) + 8), st.sampled_from([42, None]))
def test_the_common_case_parse_agrees_with_the_full_one(changes, size, key):
    """Whatever common_payload takes, parse_gre_nhrp takes too, with the same payload; what
    it leaves (anything but a plain 20-byte header, no fragment, exactly our GRE header,
    a total length within what was read) goes to parse_gre_nhrp."""
    data = bytearray(_DATAGRAM if key is not None else
                     _DATAGRAM[:20] + gre_header(None) + _DATAGRAM[28:])
    for at, value in changes:
        if at < len(data):
            data[at] = value
    data = bytes(data[:size] + bytes(max(0, size - len(data))))
    got = common_payload(data, gre_header(key))
    if got is not None:
        assert parse_gre_nhrp(data, key) == (got, "")


def test_the_common_case_parse_takes_the_usual_datagram_and_leaves_the_rest():
    head = gre_header(42)
    assert common_payload(_DATAGRAM, head) == bytes(range(12))
    assert common_payload(_DATAGRAM + b"pad", head) == bytes(range(12))   # padding dropped
    assert common_payload(_DATAGRAM, gre_header(7)) is None              # another key
    assert common_payload(_DATAGRAM[:30], head) is None                  # shorter than said
    frag = bytearray(_DATAGRAM)
    frag[7] = 1                                                          # a fragment offset
    assert common_payload(bytes(frag), head) is None
    options = bytearray(_DATAGRAM)
    options[0] = 0x46                                                    # IP options
    assert common_payload(bytes(options), head) is None
    assert common_payload(b"", head) is None
