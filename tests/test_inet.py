"""xdmvpn.inet: HashedIPv4 is an IPv4Address in every way that shows (equality, hash,
order, text, pickling, use as a key next to plain ones), with its hash kept."""

from __future__ import annotations

import copy
import pickle
from ipaddress import IPv4Address, IPv4Network, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xdmvpn.inet import HashedIPv4

u32 = st.integers(min_value=0, max_value=2**32 - 1)


@given(u32, u32)
def test_hashed_ipv4_behaves_as_the_ipv4address_of_its_value(a, b):
    plain, hashed = IPv4Address(a), HashedIPv4.from_int(a)
    assert hashed == plain and plain == hashed and not hashed != plain
    assert hash(hashed) == hash(plain) == hash(HashedIPv4(str(plain)))
    assert str(hashed) == str(plain) and repr(hashed) == repr(plain)
    assert int(hashed) == a and hashed.packed == plain.packed and hashed.version == 4
    other = IPv4Address(b)
    assert (hashed < other) == (plain < other) and (other < hashed) == (other < plain)
    assert (hashed == HashedIPv4.from_int(b)) == (a == b)
    assert {plain: 1}[hashed] == 1 and {hashed: 2}[plain] == 2
    assert hashed in {plain} and plain in frozenset({hashed})
    assert (hashed in IPv4Network("10.0.0.0/8")) == (plain in IPv4Network("10.0.0.0/8"))
    for c in (pickle.loads(pickle.dumps(hashed)), copy.copy(hashed), copy.deepcopy(hashed)):
        assert c == plain and hash(c) == hash(plain)


def test_hashed_ipv4_from_int_refuses_what_is_not_32_bits():
    for bad in (-1, 2**32):
        with pytest.raises(ValueError):
            HashedIPv4.from_int(bad)


def test_hashed_ipv4_from_text_and_bytes_as_ipv4address():
    assert HashedIPv4("192.0.2.1") == ip_address("192.0.2.1")
    assert HashedIPv4(bytes([192, 0, 2, 1])) == ip_address("192.0.2.1")
    assert hash(HashedIPv4(b"\xc0\x00\x02\x01")) == hash(ip_address("192.0.2.1"))
