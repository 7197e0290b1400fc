"""The Python mirror of the BPF contract (ctl/xdmvpn/dataplane/abi.py) against the real
compiler and kernel.

1. From abi.py, a C file of _Static_asserts (every struct's size, each field's offset, size,
   element size and signedness; every enum value and sentinel; every constant), compiled by
   bcc with the real headers: a mismatch fails the compile, naming the assert.
2. The compiled modules (production, test-clock and benchmark builds): every map abi.py
   names exists with the kernel's type, key size, value size, entries and flags (read as
   tunnel start-up reads pins: libbpf.map_info), and no other map exists; every program abi.py names is in the module, and no other.
Each check is shown to fail on a deliberately wrong mirror (the negative cases).
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum

import pytest

from conftest import require_root
from xdmvpn.dataplane import abi, build, libbpf
from xdmvpn.errors import XdmvpnError

# ---- 1. layouts, enums and constants, by the compiler -------------------------------------------

_UNSIGNED = (ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64)


def struct_asserts(cls: type[ctypes.Structure]) -> list[str]:
    c = f"struct {cls.c_name}"
    out = [f'_Static_assert(sizeof({c}) == {ctypes.sizeof(cls)}, "{c}: size");']
    for name, ctype in cls._fields_:
        f = getattr(cls, name)
        member = f"(({c} *)0)->{name}"
        out.append(f'_Static_assert(__builtin_offsetof({c}, {name}) == {f.offset}, '
                   f'"{c}: offset of {name}");')
        out.append(f'_Static_assert(sizeof({member}) == {f.size}, "{c}: size of {name}");')
        if issubclass(ctype, ctypes.Structure):
            continue                  # a nested structure: asserted on its own
        if issubclass(ctype, ctypes.Array):
            out.append(f'_Static_assert(sizeof({member}[0]) == {ctypes.sizeof(ctype._type_)}, '
                       f'"{c}: element size of {name}");')
        else:
            unsigned = int(ctype in _UNSIGNED)
            out.append(f'_Static_assert(((__typeof__({member}))-1 > 0) == {unsigned}, '
                       f'"{c}: signedness of {name}");')
    return out


def enum_asserts(spec: abi.EnumSpec) -> list[str]:
    out = [f'_Static_assert({spec.prefix}{m.name} == {int(m)}, "{spec.prefix}{m.name}");'
           for m in spec.enum]
    if spec.sentinel:
        nxt = max(int(m) for m in spec.enum) + 1
        out.append(f'_Static_assert({spec.sentinel} == {nxt}, '
                   f'"{spec.sentinel}: members after {spec.enum.__name__}\'s last");')
    return out


def c_checks(structs=abi.STRUCTS, enums=abi.ENUMS, constants=abi.CONSTANTS) -> str:
    lines = ['#include "xdmvpn_structs.h"']
    for cls in structs:
        lines += struct_asserts(cls)
    for spec in enums:
        lines += enum_asserts(spec)
    lines += [f'_Static_assert({k} == {v}, "{k}");' for k, v in constants.items()]
    return "\n".join(lines) + "\n"


def compile_checks(**mirror) -> None:
    build.compile_text(build.inline(c_checks(**mirror)), ["-Wno-unused-function"]).cleanup()


@pytest.mark.root
def test_layouts_enums_and_constants_match_the_compiler():
    require_root()
    compile_checks()


def test_structs_are_tiled_by_their_fields():
    """No implicit padding in a mirror: with sizes and offsets equal to C's, the C struct
    then has no member that Python lacks."""
    for cls in abi.STRUCTS:
        end = 0
        for name, _ in cls._fields_:
            f = getattr(cls, name)
            assert f.offset == end, f"{cls.__name__}: gap before {name}"
            end = f.offset + f.size
        assert end == ctypes.sizeof(cls), f"{cls.__name__}: padding at the end"


def test_slot_counts_follow_the_slot_enums():
    assert abi.XDP_SLOTS == len(abi.XdpSlot) and abi.TC_SLOTS == len(abi.TcSlot)
    assert {s for s in abi.XDP_PROGRAMS.values() if s is not None} == set(abi.XdpSlot)
    assert {s for s in abi.TC_PROGRAMS.values() if s is not None} == set(abi.TcSlot)


class _PeerNarrowSlot(ctypes.Structure):
    c_name = "xdmvpn_peer"
    _fields_ = [("nbma", ctypes.c_uint32), ("stats_idx", ctypes.c_uint16),
                ("pad", ctypes.c_uint16), ("flags", ctypes.c_uint32)]


class _Lpm6KeyShort(ctypes.Structure):
    c_name = "xdmvpn_lpm6_key"
    _fields_ = [("prefixlen", ctypes.c_uint32), ("addr", ctypes.c_uint32 * 2)]


class _LpmKeySwapped(ctypes.Structure):
    c_name = "xdmvpn_lpm_key"
    _fields_ = [("addr", ctypes.c_uint32), ("prefixlen", ctypes.c_uint32)]


class _EventShortData(ctypes.Structure):
    c_name = "xdmvpn_event"
    _fields_ = abi.Event._fields_[:-1] + [("data", ctypes.c_uint8 * 64)]


class _NextHopWideMac(ctypes.Structure):
    c_name = "xdmvpn_nh"
    _fields_ = [("stamp_ns", ctypes.c_uint64), ("nbma", ctypes.c_uint32),
                ("ifindex", ctypes.c_uint32), ("mtu", ctypes.c_uint16),
                ("dmac", ctypes.c_uint16 * 3), ("smac", ctypes.c_uint16 * 3),
                ("pad", ctypes.c_uint16)]


class _BucketSigned(ctypes.Structure):
    c_name = "xdmvpn_bucket"
    _fields_ = [("tat_ns", ctypes.c_int64)]


class _ScratchRenamed(ctypes.Structure):
    c_name = "xdmvpn_scratch"
    _fields_ = [(("strip_len" if n == "strip" else n), t) for n, t in abi.Scratch._fields_]


def _with_struct(bad):
    return {"structs": tuple(bad if c.c_name == bad.c_name else c for c in abi.STRUCTS)}


def _with_enum(bad: type[enum.IntEnum], like: type[enum.IntEnum]):
    return {"enums": tuple(dataclasses.replace(s, enum=bad) if s.enum is like else s
                           for s in abi.ENUMS)}


_DropMissingLast = enum.IntEnum("Drop", [(d.name, int(d)) for d in list(abi.Drop)[:-1]])
_PathShifted = enum.IntEnum("Path", [(p.name, int(p) + (p >= abi.Path.TRIGGER))
                                     for p in abi.Path])
_SlotsWrong = enum.IntEnum("XdpSlot", [("DECAP", 0), ("HAIRPIN", 2), ("NHRP", 1),
                                       ("ENTRY", 3)])

WRONG_MIRRORS = [
    ("field-size", _with_struct(_PeerNarrowSlot), "struct xdmvpn_peer: size of stats_idx"),
    ("field-order", _with_struct(_LpmKeySwapped), "struct xdmvpn_lpm_key: offset of addr"),
    ("struct-size", _with_struct(_EventShortData), "struct xdmvpn_event: size"),
    ("ipv6-key-size", _with_struct(_Lpm6KeyShort), "struct xdmvpn_lpm6_key: size"),
    ("element-size", _with_struct(_NextHopWideMac), "struct xdmvpn_nh: element size of dmac"),
    ("signedness", _with_struct(_BucketSigned), "struct xdmvpn_bucket: signedness of tat_ns"),
    ("field-name", _with_struct(_ScratchRenamed), "no member named 'strip_len'"),
    ("enum-member-missing", _with_enum(_DropMissingLast, abi.Drop), "XDMVPN_DROP_MAX"),
    ("enum-value", _with_enum(_PathShifted, abi.Path), "XDMVPN_PATH_TRIGGER"),
    ("slot-value", _with_enum(_SlotsWrong, abi.XdpSlot), "XDMVPN_XDP_HAIRPIN"),
    ("constant", {"constants": dict(abi.CONSTANTS, XDMVPN_MAX_PEERS=abi.MAX_PEERS + 1)},
     "XDMVPN_MAX_PEERS"),
    ("constant-name", {"constants": {"XDMVPN_MAX_PEER": abi.MAX_PEERS}},
     "XDMVPN_MAX_PEER"),
]


@pytest.mark.root
@pytest.mark.parametrize("mirror,named", [(m, n) for _, m, n in WRONG_MIRRORS],
                         ids=[w[0] for w in WRONG_MIRRORS])
def test_a_wrong_mirror_fails_the_compile_naming_it(mirror, named):
    require_root()
    with pytest.raises(XdmvpnError) as exc:
        compile_checks(**mirror)
    assert named in str(exc.value)


# ---- 2. maps and programs, by the kernel ------------------------------------------------------

def _bcc():
    """libbcc's view of a compiled module (its tables and functions)."""
    from bcc.libbcc import lib

    lib.bpf_num_tables.restype = ctypes.c_size_t
    lib.bpf_num_tables.argtypes = [ctypes.c_void_p]
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return lib


def module_maps(module) -> dict[str, tuple[int, int, int, int, int]]:
    """name -> (type, key size, value size, max entries, flags) as the kernel has them."""
    lib = _bcc()
    out = {}
    for i in range(lib.bpf_num_tables(module.module)):
        name = lib.bpf_table_name(module.module, i)
        out[name.decode()] = libbpf.map_info(lib.bpf_table_fd(module.module, name))
    return out


def map_mismatches(found: dict, specs) -> list[str]:
    want = {s.name: (int(s.type), s.key_size, s.value_size, s.max_entries, s.flags)
            for s in specs}
    out = [f"{n}: not in abi.py" for n in sorted(set(found) - set(want))]
    out += [f"{n}: not in the module" for n in sorted(set(want) - set(found))]
    out += [f"{n}: kernel (type, key, value, entries, flags) {found[n]}, abi.py {want[n]}"
            for n in sorted(set(want) & set(found)) if found[n] != want[n]]
    return out


def module_functions(module) -> set[str]:
    lib = _bcc()
    return {lib.bpf_function_name(module.module, i).decode()
            for i in range(lib.bpf_num_functions(module.module))}


BUILDS = {  # name: (DataplaneConfig settings, maps, programs besides the product's)
    "production": ({}, abi.MAPS, set()),
    "ipsec": ({"ipsec": True, "gre_key": 7}, abi.MAPS, set(abi.IPSEC_PROGRAMS)),
    "test-clock": ({"test_clock": True}, abi.MAPS + abi.TEST_MAPS, set()),
    "bench": ({"bench": True, "bench_len": 64}, abi.MAPS + abi.BENCH_MAPS,
              {"xdmvpn_bench_xdp", "xdmvpn_bench_base", "xdmvpn_bench_gen",
               "xdmvpn_bench_sink", "xdmvpn_bench_tc_base"}),
}


@pytest.fixture(scope="module")
def modules():
    require_root()
    made = {name: build.compile_bpf(build.DataplaneConfig(local_nbma="192.0.2.1", **cfg))
            for name, (cfg, _, _) in BUILDS.items()}
    yield made
    for m in made.values():
        m.cleanup()


@pytest.mark.root
@pytest.mark.parametrize("name", BUILDS)
def test_maps_match_the_kernel(modules, name):
    assert map_mismatches(module_maps(modules[name]), BUILDS[name][1]) == []


@pytest.mark.root
@pytest.mark.parametrize("name", BUILDS)
def test_programs_match_the_module(modules, name):
    want = set(abi.XDP_PROGRAMS) | set(abi.TC_PROGRAMS) | BUILDS[name][2]
    assert module_functions(modules[name]) == want


_BAD_SPECS = [
    ("extra-map", abi.MAPS + (abi.MapSpec("xdmvpn_gone", abi.MapType.HASH, abi.Be32,
                                           abi.Peer, 1),), "xdmvpn_gone: not in the module"),
    ("missing-map", abi.MAPS[1:], "xdmvpn_peers: not in abi.py"),
    ("entries", tuple(dataclasses.replace(s, max_entries=s.max_entries + 1)
                      if s.name == "xdmvpn_drops" else s for s in abi.MAPS), "xdmvpn_drops"),
    ("value-type", tuple(dataclasses.replace(s, value=abi.RlSlot)
                         if s.name == "xdmvpn_nhrp_budget" else s for s in abi.MAPS),
     "xdmvpn_nhrp_budget"),
    ("map-type", tuple(dataclasses.replace(s, type=abi.MapType.HASH)
                       if s.name == "xdmvpn_nhrp_buckets" else s for s in abi.MAPS),
     "xdmvpn_nhrp_buckets"),
    ("flags", tuple(dataclasses.replace(s, flags=0)
                    if s.name == "xdmvpn_known_peers" else s for s in abi.MAPS),
     "xdmvpn_known_peers"),
    ("ipv6-key", tuple(dataclasses.replace(s, key=abi.Be32)
                       if s.name == "xdmvpn_peers6" else s for s in abi.MAPS),
     "xdmvpn_peers6"),
]


@pytest.mark.root
@pytest.mark.parametrize("specs,named", [(s, n) for _, s, n in _BAD_SPECS],
                         ids=[b[0] for b in _BAD_SPECS])
def test_a_wrong_map_spec_is_found(modules, specs, named):
    problems = map_mismatches(module_maps(modules["production"]), specs)
    assert len(problems) == 1 and problems[0].startswith(named), problems
