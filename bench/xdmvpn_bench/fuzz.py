"""`xdmvpn bench fuzz`: a seeded mutation fuzzer over the NHRP codec and over a hub and a
spoke engine Node (fake clock), asserting after every input what docs/security.md promises:

- codec: decode raises NhrpDecodeError and nothing else; what decodes encodes back to the
  same bytes (checksum field aside);
- engine: nothing escapes (Node.receive's bug counter stays 0), every table within its cap,
  every packet sent goes to the observed source or to an address the node already holds (its
  NHS, a cache entry, or an address the packet's trusted sender vouched for), output bytes per
  input bounded.

Inputs are valid packets of every type (with and without the authentication extension,
IPv4 and IPv6) mutated field by field and then encoded (so their checksum is valid), or
mutated byte by byte with the checksum fixed for most. Work is split over worker processes.
Every input that breaks an invariant is returned (hex) so that it can be kept in
tests/fuzz/corpus/ and replayed."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from xdmvpn.engine.build import request_extensions
from xdmvpn.engine.clock import FakeClock
from xdmvpn.engine.effects import Recorder, RouteHint
from xdmvpn.engine.node import Node
from xdmvpn.engine.params import NhsParams, NodeParams
from xdmvpn.inet import IPAddress, checksum
from xdmvpn.nhrp import (
    Cie, CieListExtension, ErrorIndication, Extension, NhrpDecodeError, Packet,
    ProtocolType, PurgeReply, PurgeRequest, RegistrationReply, RegistrationRequest,
    RequestReply, ResolutionReply, ResolutionRequest, TrafficIndication, VendorExtension,
    decode, encode,
)

CODEC_INPUTS = 10_000_000
ENGINE_INPUTS = 1_000_000
SECRET = b"fuzzkey"
OUT_PER_IN = 2          # output bytes per input byte, at most (plus OUT_SLACK)
OUT_SLACK = 2048
A = ip_address
HUB_NBMA, S1_NBMA, S2_NBMA = A("192.0.2.1"), A("192.0.2.11"), A("192.0.2.12")
STRANGERS = [A(f"203.0.113.{i}") for i in range(1, 40)]
STRANGERS6 = [A(f"2001:db8:bad::{i:x}") for i in range(1, 40)]


@dataclass(frozen=True)
class Plan:
    """The world's addresses in one overlay family over one underlay family."""
    overlay: int
    nbma: int

    def nbma_of(self, host: int) -> IPAddress:
        return A(f"192.0.2.{host}") if self.nbma == 4 else A(f"2001:db8:ff::{host:x}")

    def proto(self, host: int) -> IPAddress:
        return A(f"10.0.0.{host}") if self.overlay == 4 else A(f"2001:db8:100::{host:x}")

    def lan_host(self, i: int, host: int) -> IPAddress:
        return A(f"192.168.{i}.{host}") if self.overlay == 4 else A(f"2001:db8:1{i}::{host:x}")

    def lan(self, i: int) -> Any:
        return ip_network(f"192.168.{i}.0/24" if self.overlay == 4 else f"2001:db8:1{i}::/64")

    @property
    def summary(self) -> Any:
        return ip_network("192.168.0.0/16" if self.overlay == 4 else "2001:db8::/32")

    @property
    def bits(self) -> int:
        return 32 if self.overlay == 4 else 128

    @property
    def prefix_len(self) -> int:
        return 24 if self.overlay == 4 else 64


#: every (overlay, underlay) family pair the seeds come in; the worlds of a role suffix
PLANS = {"": Plan(4, 4), "6": Plan(6, 6), "64": Plan(6, 4), "46": Plan(4, 6)}


# -- seeds ------------------------------------------------------------------------------------

def _ipv4_head(src: str, dst: str) -> bytes:
    return (bytes.fromhex("4500005400004000400100") + b"\0" + A(src).packed + A(dst).packed
            + bytes.fromhex("0800f7ff00010001"))


def _head(src: IPAddress, dst: IPAddress) -> bytes:
    """The start of an echo request from src to dst, IPv4 or IPv6."""
    if src.version == 4:
        return _ipv4_head(str(src), str(dst))
    return (bytes.fromhex("6000000000083a40") + src.packed + dst.packed
            + bytes.fromhex("8000000000010001"))


def seeds(auth: bytes | None, plan: Plan = PLANS[""]) -> list[Packet]:
    """One valid packet of every type (and variants), as our peers send them, in the
    families of `plan` (IPv4 over IPv4 by default)."""
    s1_nbma, s2_nbma, hub_nbma = plan.nbma_of(11), plan.nbma_of(12), plan.nbma_of(1)
    s1, s2, hub = plan.proto(11), plan.proto(12), plan.proto(1)
    lan1, lan2 = plan.lan_host(1, 10), plan.lan_host(2, 20)
    bits = plan.bits
    p = NodeParams(tunnel_ip=s1, prefix_len=plan.prefix_len, nbma=s1_nbma, auth=auth)
    ext = request_extensions(p, nat=[])
    nat = request_extensions(p, nat=[Cie(prefix_len=bits, mtu=1400, client_nbma=s1_nbma,
                                         client_proto=s1)])
    own = Cie(prefix_len=bits, mtu=1400, holdtime=300, client_nbma=s2_nbma, client_proto=s2)
    fam: dict[str, Any] = dict(afn=1 if plan.nbma == 4 else 2,
                               protocol_type=ProtocolType.IPV4 if plan.overlay == 4
                               else ProtocolType.IPV6)
    base: dict[str, Any] = dict(fam, src_nbma=s1_nbma, src_proto=s1, dst_proto=hub,
                                request_id=77)
    out: list[Packet] = [
        RegistrationRequest(**base, flags=0x8002, cies=[Cie(prefix_len=bits, mtu=1400,
                                                             holdtime=300)], extensions=nat),
        RegistrationRequest(**{**base, "dst_proto": s1}, flags=0x8002,
                            cies=[Cie(prefix_len=0xFF, holdtime=300)], extensions=ext),
        RegistrationReply(**base, flags=0x8002, cies=[Cie(code=0, prefix_len=bits,
                                                           holdtime=300)], extensions=ext),
        ResolutionRequest(**{**base, "dst_proto": lan2}, flags=0xc802,
                          cies=[Cie(prefix_len=0, mtu=1400, holdtime=300)], extensions=ext),
        ResolutionRequest(**{**base, "dst_proto": s2}, flags=0xc802,
                          cies=[], extensions=nat),
        ResolutionReply(**{**base, "dst_proto": lan2}, flags=0xf802,
                        cies=[own], extensions=ext),
        PurgeRequest(**base, cies=[Cie(prefix_len=bits, client_proto=s1)],
                     extensions=request_extensions(p, responder=False)),
        PurgeReply(**base, cies=[Cie(prefix_len=plan.prefix_len, client_proto=s2)],
                   extensions=ext),
        TrafficIndication(**fam, src_nbma=hub_nbma, src_proto=hub, dst_proto=lan1,
                          contents=_head(lan1, lan2),
                          extensions=request_extensions(p, responder=False, nat=[])),
        ErrorIndication(**fam, src_nbma=hub_nbma, src_proto=hub, dst_proto=s1,
                        error_code=6, error_offset=0, contents=b"",
                        extensions=request_extensions(p, responder=False)),
        RegistrationRequest(afn=1, protocol_type=ProtocolType.IPV6, src_nbma=S1_NBMA,
                            src_proto=A("2001:db8::11"), dst_proto=A("2001:db8::1"),
                            request_id=78, flags=0x8002, cies=[Cie(prefix_len=128,
                                                                   holdtime=300)],
                            extensions=ext),
    ]
    err = out[-2]
    assert isinstance(err, ErrorIndication)
    err.contents = encode(out[3])
    vendor = ResolutionRequest(**{**base, "dst_proto": lan2}, flags=0xc802,
                               cies=[], extensions=[VendorExtension(9, b"abc"),
                                                    Extension(0x1234, False, b"x"), *ext])
    out.append(vendor)
    return out


# -- mutation ---------------------------------------------------------------------------------

class Mutator:
    def __init__(self, rng: random.Random, pool: list[IPAddress]):
        self.rng = rng
        self.pool = pool

    def address(self) -> Any:
        r = self.rng.random()
        if r < 0.6:
            return self.rng.choice(self.pool)
        if r < 0.7:
            return None
        if r < 0.8:
            return IPv4Address(self.rng.getrandbits(32))
        if r < 0.9:
            return IPv6Address(self.rng.getrandbits(128))
        return self.rng.randbytes(self.rng.choice((1, 2, 3, 5, 8, 15, 17, 20)))

    def cie(self) -> Cie:
        rng = self.rng
        return Cie(code=rng.choice((0, 0, 4, 5, 12, 14, rng.randrange(256))),
                   prefix_len=rng.choice((0, 8, 24, 32, 33, 64, 128, 129, 255,
                                          rng.randrange(256))),
                   mtu=rng.randrange(65536), holdtime=rng.choice((0, 1, 300, 65535)),
                   client_nbma=self.address(), client_proto=self.address(),
                   preference=rng.randrange(256))

    def packet(self, pkt: Packet) -> Packet:
        """A copy of pkt with a few fields changed."""
        rng = self.rng
        pkt = decode(encode(pkt), strict=False)
        for _ in range(rng.choice((1, 1, 2, 3))):
            what = rng.randrange(14)
            if what == 0:
                pkt.src_nbma = self.address()
            elif what == 1:
                pkt.src_proto = self.address()
            elif what == 2:
                pkt.dst_proto = self.address()
            elif what == 3:
                pkt.afn = rng.choice((1, 2, 3, rng.randrange(65536)))
            elif what == 4:
                pkt.protocol_type = rng.choice((0x0800, 0x86DD, 0x0806, rng.randrange(65536)))
            elif what == 5:
                pkt.hop_count = rng.choice((0, 1, 2, 255))
            elif what == 6 and isinstance(pkt, RequestReply):
                pkt.cies = [self.cie() for _ in range(rng.choice((0, 1, 1, 2, 5, 70)))]
            elif what == 7 and isinstance(pkt, RequestReply) and pkt.cies:
                c = rng.choice(pkt.cies)
                c.prefix_len = rng.randrange(256)
                c.client_proto = self.address()
            elif what == 8 and isinstance(pkt, RequestReply):
                pkt.flags = rng.getrandbits(16)
                pkt.request_id = rng.getrandbits(32)
            elif what == 9:
                lists = [e for e in pkt.extensions if isinstance(e, CieListExtension)]
                if lists:
                    rng.choice(lists).cies = [self.cie() for _ in range(rng.choice((1, 2, 70)))]
            elif what == 10 and pkt.extensions:
                del pkt.extensions[rng.randrange(len(pkt.extensions))]
            elif what == 11:
                pkt.extensions.insert(rng.randrange(len(pkt.extensions) + 1),
                                      Extension(rng.randrange(16), rng.random() < 0.5,
                                                rng.randbytes(rng.randrange(12))))
            elif what == 12 and isinstance(pkt, (ErrorIndication, TrafficIndication)):
                dst = rng.choice(self.pool)
                src = A("192.168.1.10") if dst.version == 4 else A("2001:db8:11::a")
                pkt.contents = rng.randbytes(rng.randrange(80)) if rng.random() < 0.5 else \
                    _head(src, dst)
            elif what == 13:
                pkt.nbma_type = rng.choice((0, 0x40))
                pkt.src_nbma_sub = rng.choice((b"", b"\x01"))
        return pkt

    def bytes_(self, data: bytes, fix: bool) -> bytes:
        """Byte-level damage; the checksum recomputed when `fix`."""
        rng = self.rng
        b = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 4))):
            op = rng.randrange(5)
            if op == 0 and b:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            elif op == 1 and b:
                b[rng.randrange(len(b))] = rng.randrange(256)
            elif op == 2:
                i = rng.randrange(len(b) + 1)
                b[i:i] = rng.randbytes(rng.randrange(1, 9))
            elif op == 3 and b:
                i = rng.randrange(len(b))
                del b[i:i + rng.randrange(1, 9)]
            elif op == 4 and len(b) > 20:
                b[rng.randrange(4, 20)] = rng.randrange(256)    # a header field
        if fix and len(b) >= 20:
            size = min(int.from_bytes(b[10:12], "big"), len(b))
            if size >= 20:
                b[12:14] = b"\0\0"
                b[12:14] = checksum(bytes(b[:size])).to_bytes(2, "big")
        return bytes(b)


# -- the codec --------------------------------------------------------------------------------

def fuzz_codec(n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    pool: list[IPAddress] = [A("10.0.0.1"), A("10.0.0.11"), S1_NBMA, A("2001:db8::1")]
    m = Mutator(rng, pool)
    wires = [encode(s) for auth in (SECRET, None) for s in seeds(auth)]
    stats = {"inputs": 0, "decoded": 0, "exceptions": 0, "roundtrip_mismatch": 0}
    crashes: list[str] = []
    for _ in range(n):
        data = m.bytes_(rng.choice(wires), rng.random() < 0.8)
        stats["inputs"] += 1
        try:
            pkt = decode(data, strict=False)
        except NhrpDecodeError:
            continue
        except Exception as exc:                     # an escape: a finding
            stats["exceptions"] += 1
            crashes.append(f"codec {type(exc).__name__} {data.hex()}")
            continue
        stats["decoded"] += 1
        size = pkt.packet_size or len(data)
        try:
            again = encode(pkt)
        except Exception as exc:
            stats["exceptions"] += 1
            crashes.append(f"codec-encode {type(exc).__name__} {data.hex()}")
            continue
        if again[:12] + again[14:] != data[:12] + data[14:size]:
            stats["roundtrip_mismatch"] += 1
            if len(crashes) < 50:
                crashes.append(f"codec-roundtrip - {data.hex()}")
    stats["crashes"] = crashes
    return stats


# -- the engine -------------------------------------------------------------------------------

@dataclass
class World:
    """A hub with two registered spokes (spoke 1 behind it with a LAN, a shortcut-capable
    spoke), all on one fake clock; `target` is the node the fuzzer feeds."""
    clock: FakeClock
    nodes: dict[IPAddress, Node]
    target: Node
    auth: bytes | None
    caps: dict[str, int] = field(default_factory=dict)

    def deliver(self) -> None:
        for _ in range(20):
            moved = False
            for src, node in list(self.nodes.items()):
                for dst, data in node.fx.take():
                    moved = True
                    if dst in self.nodes:
                        self.nodes[dst].receive(data, src)
            if not moved:
                return


def plan_of(role: str) -> Plan:
    """"hub", "spoke": IPv4 over IPv4; "hub6", "spoke6": IPv6 over IPv6."""
    suffix = role.removeprefix("hub").removeprefix("spoke")
    if suffix not in PLANS:
        raise ValueError(f"no fuzz world {role!r}")
    return PLANS[suffix]


def world(role: str, auth: bytes | None, seed: int) -> World:
    clock = FakeClock()
    rng = random.Random(seed)
    plan = plan_of(role)

    def node(nbma: IPAddress, **kw: Any) -> Node:
        fx = Recorder()
        return Node(NodeParams(nbma=nbma, prefix_len=plan.prefix_len, holdtime=300,
                               auth=auth, **kw), fx, clock, random.Random(rng.random()))
    hub_nbma, s1_nbma, s2_nbma = plan.nbma_of(1), plan.nbma_of(11), plan.nbma_of(12)
    hub = node(hub_nbma, tunnel_ip=plan.proto(1), redirect=True, multicast_dynamic=True)
    nhs = (NhsParams(hub_nbma, plan.proto(1)),)
    s1 = node(s1_nbma, tunnel_ip=plan.proto(11), shortcut=True, nhs=nhs)
    s2 = node(s2_nbma, tunnel_ip=plan.proto(12), shortcut=True, nhs=nhs)
    for i, s in ((1, s1), (2, s2)):
        s.fx.routes[plan.lan(i)] = RouteHint(local=True, prefix_len=plan.lan(i).prefixlen)
        hub.fx.routes[plan.lan(i)] = RouteHint(via=plan.proto(10 + i))
    for s in (s1, s2):
        s.fx.routes[plan.summary] = RouteHint(via=plan.proto(1))
    w = World(clock, {hub_nbma: hub, s1_nbma: s1, s2_nbma: s2},
              hub if role.startswith("hub") else s1, auth)
    for n in w.nodes.values():
        n.tick()
    w.deliver()
    lan1, lan2 = plan.lan_host(1, 10), plan.lan_host(2, 20)
    hub.on_trigger(s1_nbma, lan1, lan2, _head(lan1, lan2))
    w.deliver()
    return w


def _addresses(pkt: Packet) -> set[Any]:
    """Every address the packet names (what a trusted sender may vouch for)."""
    out = {pkt.src_nbma}
    for c in (pkt.cies if isinstance(pkt, RequestReply) else []):
        out.add(c.client_nbma)
    for e in pkt.extensions:
        if isinstance(e, CieListExtension):
            out.update(c.client_nbma for c in e.cies)
    return out


def check(node: Node, observed: IPAddress, data: bytes, sent: list[tuple[IPAddress, bytes]],
          before_bugs: int) -> str | None:
    """The invariants after one input; None when they hold, else what broke."""
    if node.stats[("drop", "bug")] != before_bugs:
        return f"bug {node.last_bug}"
    lim, ctx = node.p.limits, node.ctx
    tables = {"answered": (len(node.answered_table), lim.answered),
              "indications": (len(node.indications_.sent), lim.indications),
              "resolving": (len(node.resolving), lim.resolving),
              "pending": (len(ctx.pending), lim.pending),
              "shortcuts": (len(node.shortcuts), lim.shortcuts),
              "entries_at_source": (ctx.cache.at_nbma(observed), lim.entries_per_nbma),
              "negative": (ctx.cache.negatives, lim.negative),
              "entries": (len(ctx.cache), node.p.max_entries)}
    for name, (n, cap) in tables.items():
        if n > cap:
            return f"table {name} {n} > {cap}"
    out = sum(len(b) for _, b in sent)
    if out > OUT_PER_IN * len(data) + OUT_SLACK:
        return f"output {out} bytes for {len(data)}"
    vouched: set[Any] = set()
    if ctx.vouches(observed):
        try:
            vouched = _addresses(decode(data, strict=False))
        except NhrpDecodeError:
            pass
    for to, _ in sent:
        if to == observed or to in vouched or ctx.is_nhs(to) or ctx.cache.knows(to):
            continue
        return f"sent to {to}, neither observed ({observed}) nor known"
    return None


def fuzz_engine(n: int, seed: int, role: str, auth: bytes | None) -> dict[str, Any]:
    rng = random.Random(seed)
    w = world(role, auth, seed)
    node = w.target
    plan = plan_of(role)
    pool: list[IPAddress] = [A("10.0.0.1"), A("10.0.0.11"), A("10.0.0.12"), A("10.0.0.66"),
                             A("192.168.2.20"), A("192.168.1.10"), A("172.16.0.1"),
                             HUB_NBMA, S1_NBMA, S2_NBMA, STRANGERS[0], A("2001:db8::1")]
    pool += [plan.proto(1), plan.proto(11), plan.proto(12), plan.proto(66),
             plan.lan_host(2, 20), plan.nbma_of(1), plan.nbma_of(11), STRANGERS6[0]]
    m = Mutator(rng, pool)
    # the world's own families first, then every other pair (IPv6 packets at an IPv4
    # node and the other way round are inputs too)
    seeds_ = [s for pl in (plan, *PLANS.values()) for a in (auth, b"wrong", None)
              for s in seeds(a, pl)]
    strangers = STRANGERS if plan.nbma == 4 else STRANGERS6
    observers = [plan.nbma_of(1), plan.nbma_of(11), plan.nbma_of(12), *strangers]
    stats: dict[str, Any] = {"inputs": 0, "exceptions": 0, "violations": 0,
                             "max_out_bytes": 0, "max_sent_packets": 0, "max_cache": 0,
                             "max_pending": 0, "max_answered": 0, "max_resolving": 0,
                             "max_indications": 0, "max_shortcuts": 0}
    crashes: list[str] = []
    for i in range(n):
        if i % 500 == 0:                         # time passes, timers run, traffic flows
            w.clock.advance(rng.choice((0.1, 1.0, 2.5, 30.0, 120.0)))
            for other in w.nodes.values():
                other.tick()
            w.deliver()
            if role.startswith("hub"):
                for _ in range(20):
                    src = IPv4Address(rng.getrandbits(32)) if plan.overlay == 4 else \
                        IPv6Address(rng.getrandbits(128))
                    node.on_trigger(rng.choice(observers), src, plan.lan_host(2, 20), b"")
                node.fx.take()
            if rng.random() < 0.02:
                node.clear_cache()
                node.fx.take()
        seed_pkt = rng.choice(seeds_)
        r = rng.random()
        try:
            if r < 0.75:
                data = encode(m.packet(seed_pkt))
            elif r < 0.95:
                data = m.bytes_(encode(seed_pkt), rng.random() < 0.9)
            else:
                data = encode(seed_pkt)
        except (ValueError, TypeError, OverflowError, AttributeError):
            continue                             # not encodable: not an input
        observed = rng.choice(observers)
        node.fx.take()
        bugs = node.stats[("drop", "bug")]
        stats["inputs"] += 1
        try:
            node.receive(data, observed)
        except Exception as exc:                 # the guard itself failed
            stats["exceptions"] += 1
            crashes.append(f"{role} {auth is not None} {observed} {type(exc).__name__} "
                           f"{data.hex()}")
            continue
        sent = node.fx.take()
        problem = check(node, observed, data, sent, bugs)
        if problem is not None:
            if problem.startswith("bug"):
                stats["exceptions"] += 1
            else:
                stats["violations"] += 1
            if len(crashes) < 100:
                crashes.append(f"{role} {auth is not None} {observed} "
                               f"{problem.replace(' ', '_')} {data.hex()}")
        out = sum(len(b) for _, b in sent)
        stats["max_out_bytes"] = max(stats["max_out_bytes"], out)
        stats["max_sent_packets"] = max(stats["max_sent_packets"], len(sent))
        stats["max_cache"] = max(stats["max_cache"], len(node.cache))
        stats["max_pending"] = max(stats["max_pending"], len(node.ctx.pending))
        stats["max_answered"] = max(stats["max_answered"], len(node.answered_table))
        stats["max_resolving"] = max(stats["max_resolving"], len(node.resolving))
        stats["max_indications"] = max(stats["max_indications"], len(node.indications_.sent))
        stats["max_shortcuts"] = max(stats["max_shortcuts"], len(node.shortcuts))
    stats["crashes"] = crashes
    stats["drops"] = {k[1]: v for k, v in node.stats.items()
                      if isinstance(k, tuple) and k[0] == "drop"}
    return stats


def replay(line: str) -> str | None:
    """One corpus line ("codec ... HEX" or "ROLE AUTH OBSERVED WHAT HEX"): None when the
    input now passes."""
    words = line.split()
    data = bytes.fromhex(words[-1])
    if words[0].startswith("codec"):
        try:
            pkt = decode(data, strict=False)
        except NhrpDecodeError:
            return None
        except Exception as exc:
            return f"codec raised {type(exc).__name__}"
        again = encode(pkt)
        size = pkt.packet_size or len(data)
        if again[:12] + again[14:] != data[:12] + data[14:size]:
            return "round trip differs"
        return None
    role, auth, observed = words[0], words[1] == "True", A(words[2])
    w = world(role, SECRET if auth else None, 1)
    node = w.target
    node.fx.take()
    node.receive(data, observed)
    return check(node, observed, data, node.fx.take(), 0)


# -- the run ----------------------------------------------------------------------------------

def _task(spec: tuple[str, int, int, str, bool]) -> tuple[str, dict[str, Any]]:
    kind, n, seed, role, auth = spec
    if kind == "codec":
        return kind, fuzz_codec(n, seed)
    return f"engine-{role}-{'auth' if auth else 'open'}", fuzz_engine(
        n, seed, role, SECRET if auth else None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codec-inputs", type=int, default=CODEC_INPUTS,
                        help=f"mutated inputs for the codec (default {CODEC_INPUTS:,})")
    parser.add_argument("--engine-inputs", type=int, default=ENGINE_INPUTS,
                        help=f"decodable inputs for hub and spoke nodes (default {ENGINE_INPUTS:,})")
    parser.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: one per CPU)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    codec_n = int(getattr(args, "codec_inputs", CODEC_INPUTS))
    engine_n = int(getattr(args, "engine_inputs", ENGINE_INPUTS))
    seed = int(getattr(args, "seed", 1))
    workers = max(1, int(getattr(args, "workers", os.cpu_count() or 1)))
    chunks = max(1, workers * 4)
    specs: list[tuple[str, int, int, str, bool]] = []
    for i in range(chunks):
        specs.append(("codec", codec_n // chunks + (i < codec_n % chunks), seed * 1000 + i,
                      "", False))
    worlds = [(r, a) for r in ("hub", "spoke") for a in (True, False)]
    worlds += [("hub6", True), ("spoke6", True), ("hub64", False), ("spoke46", False)]
    per = max(1, engine_n // len(worlds))
    for j, (role, auth) in enumerate(worlds):
        specs.append(("engine", per, seed * 1000 + 500 + j, role, auth))
    t0 = time.monotonic()
    if workers == 1:
        results = [_task(s) for s in specs]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_task, specs, chunksize=1)
    wall = time.monotonic() - t0
    codec = {"inputs": 0, "decoded": 0, "exceptions": 0, "roundtrip_mismatch": 0}
    engine: dict[str, Any] = {"inputs": 0, "exceptions": 0, "violations": 0}
    maxima: dict[str, int] = {}
    crashes: list[str] = []
    per_world: dict[str, Any] = {}
    for name, r in results:
        crashes += r.pop("crashes")
        if name == "codec":
            for k in codec:
                codec[k] += r[k]
            continue
        per_world[name] = {"inputs": r["inputs"], "drops": r.pop("drops")}
        for k, v in r.items():
            if k.startswith("max_"):
                maxima[k] = max(maxima.get(k, 0), v)
            else:
                engine[k] += v
    return {"codec_inputs": codec["inputs"], "codec_decoded": codec["decoded"],
            "codec_exceptions": codec["exceptions"],
            "codec_roundtrip_mismatches": codec["roundtrip_mismatch"],
            "engine_inputs": engine["inputs"], "engine_exceptions": engine["exceptions"],
            "engine_violations": engine["violations"], "engine_maxima": maxima,
            "engine_worlds": per_world, "crashes": crashes[:100],
            "seconds": round(wall, 1), "workers": workers, "seed": seed}
