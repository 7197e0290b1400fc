"""Attach and detach: XDP (native, generic only when native is impossible),
tc clsact filters through pyroute2, the overlay veth pair, bpffs pins."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import XdmvpnError
from . import abi, libbpf

log = logging.getLogger(__name__)

XDP_FLAGS_SKB_MODE = 1 << 1      # uapi/linux/if_link.h
XDP_FLAGS_DRV_MODE = 1 << 2
IFF_UP = 0x1                     # uapi/linux/if.h
IFF_NOARP = 0x80
TC_INGRESS = "ffff:fff2"
TC_EGRESS = "ffff:fff3"
TC_PRIO = 1
TC_HANDLE = 1
BPFFS = Path("/sys/fs/bpf")
# dmvpn0-dp's MTU above dmvpn0's: it also carries encapsulated packets (an IPsec
# peer's, handed to the stack there), with room for the outer IPv4 + GRE.
DP_MTU_HEADROOM = 100
IPV6_MIN_MTU = abi.IPV6_MIN_MTU


def _ipr():
    try:
        from pyroute2 import IPRoute
    except ImportError as exc:
        raise XdmvpnError("pyroute2 is missing: pip install pyroute2") from exc
    return IPRoute()


def ifindex(name: str) -> int:
    """Through netlink, so that it answers in the calling thread's netns."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
    if not found:
        raise XdmvpnError(f"interface {name} does not exist")
    return found[0]


def mac_of(name: str) -> str:
    with _ipr() as ipr:
        link = ipr.get_links(ifindex(name))[0]
    return link.get_attr("IFLA_ADDRESS")


def _xdp_attach(ifname: str, fd: int, flags: int) -> None:
    """Attach (fd >= 0, replacing what is there in that mode) or detach (fd -1) through
    libbpf: the daemon does it without bcc."""
    rc = libbpf.function("bpf_xdp_attach")(ifindex(ifname), fd, flags, None)
    libbpf.check(rc, f"XDP on {ifname}")


def attach_xdp(ifname: str, fn, mode: str = "native") -> str:
    """Attach (or atomically replace) an XDP program (anything with .fd: a pinned
    program or a bcc function).  Returns the mode used."""
    if mode == "native":
        try:
            _xdp_attach(ifname, fn.fd, XDP_FLAGS_DRV_MODE)
            return "native"
        except OSError as exc:
            log.warning("native XDP impossible on %s (%s): falling back to generic XDP, "
                        "which is much slower", ifname, exc.strerror)
    try:
        _xdp_attach(ifname, fn.fd, XDP_FLAGS_SKB_MODE)
    except OSError as exc:
        raise XdmvpnError(f"cannot attach XDP to {ifname}: {exc.strerror}; does the kernel "
                          "have CONFIG_XDP_SOCKETS/BPF and is the interface up?") from None
    return "generic"


def detach_xdp(ifname: str) -> None:
    for flags in (XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE):
        try:
            _xdp_attach(ifname, -1, flags)
        except (OSError, XdmvpnError):  # nothing attached in that mode, or no interface
            pass


def attach_tc_ingress(ifname: str, fn, parent: str = TC_INGRESS) -> None:
    """clsact on ifname and fn as its ingress (or egress) filter (direct action),
    replaced in place when one is there already."""
    idx = ifindex(ifname)
    with _ipr() as ipr:
        try:
            ipr.tc("add", "clsact", idx)
        except Exception as exc:
            if getattr(exc, "code", None) != errno.EEXIST:
                raise XdmvpnError(f"cannot add clsact to {ifname}: {exc}; the kernel "
                                  "needs CONFIG_NET_SCH_INGRESS") from exc
        try:
            ipr.tc("replace-filter", "bpf", idx, TC_HANDLE, fd=fn.fd, name=fn.name.decode(),
                   parent=parent, prio=TC_PRIO, classid=1, direct_action=True)
        except Exception as exc:
            raise XdmvpnError(f"cannot attach tc program to {ifname}: {exc}; the kernel "
                              "needs CONFIG_NET_CLS_BPF") from exc


def attach_tc_egress(ifname: str, fn) -> None:
    attach_tc_ingress(ifname, fn, TC_EGRESS)


def detach_tc_egress(ifname: str) -> None:
    """Remove our egress filter (the guard), leaving others' filters and clsact."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        try:
            ipr.tc("del-filter", "bpf", found[0], TC_HANDLE, parent=TC_EGRESS, prio=TC_PRIO)
        except Exception:
            pass


def prepare_ipsec(dp_name: str) -> None:
    """Encap hands IPsec peers' GRE (source: our NBMA address) up the stack of
    dp_name, to be forwarded through the xfrm output policy: that needs
    forwarding and accept_local on it and no reverse-path filter."""
    _sysctl(f"net/ipv4/conf/{dp_name}/forwarding", "1")
    _sysctl(f"net/ipv4/conf/{dp_name}/accept_local", "1")
    _sysctl(f"net/ipv4/conf/{dp_name}/rp_filter", "0")


def create_esp_rx(name: str) -> None:
    """A collect_md GRE device `name` (kept when there): the kernel's receive path for GRE
    it decrypted from ESP (xdmvpn_tc_esp_rx on its ingress takes it to the overlay).
    Needs ip_gre, which every kernel with ESP here has; one line when it is missing."""
    why = _add_collect_md_gre(name, "gre")
    if why is not None:
        raise XdmvpnError(f"cannot create {name} (GRE decrypted from ESP arrives there): "
                          f"{why}; the kernel needs ip_gre (CONFIG_NET_IPGRE)")
    _sysctl(f"net/ipv4/conf/{name}/rp_filter", "0")
    _link_up(name)


def _add_collect_md_gre(name: str, kind: str) -> str | None:
    """`ip link add name type kind external` (a collect_md GRE device, down) unless name
    exists; the kernel's reason (one line) when it refuses, else None."""
    if _link_exists(name):
        return None
    res = subprocess.run(["ip", "link", "add", name, "type", kind, "external"],
                         capture_output=True, text=True)
    if res.returncode == 0:
        return None
    return (res.stderr.strip().splitlines() or ["failed"])[-1]


def _link_up(name: str) -> None:
    with _ipr() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")


# ip_gre / ip6_gre: the module, and the link kind of its collect_md device
GRE_KINDS = {4: ("ip_gre", "gre"), 6: ("ip6_gre", "ip6gre")}


def gre_loaded(version: int) -> bool:
    """Whether the kernel has ip_gre (version 4) or ip6_gre (6) loaded."""
    return Path("/sys/module", GRE_KINDS[version][0]).exists()


def create_gre_sink(name: str, version: int, fn) -> bool:
    """A collect_md GRE device `name` (ip6gre for version 6), down, with program fn (the
    sink: drops all) on its ingress, then up.  ip_gre hands it what XDP passes up (NHRP,
    already taken by the controller's raw socket; GRE that is no tunnel's) instead of
    answering each datagram with ICMP port unreachable.  False (logged) when the kernel
    refuses the device, e.g. another collect_md device of the namespace exists (which then
    takes those datagrams).  An existing `name` is kept."""
    module, kind = GRE_KINDS[version]
    why = _add_collect_md_gre(name, kind)
    if why is not None:
        log.warning("%s is loaded but %s cannot be created (%s): the kernel answers NHRP "
                    "with ICMP port unreachable", module, name, why)
        return False
    attach_tc_ingress(name, fn)
    _link_up(name)
    return True


def _link_exists(name: str) -> bool:
    with _ipr() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def detach_tc(ifname: str) -> None:
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        try:
            ipr.tc("del", "clsact", found[0])
        except Exception:
            pass


def _kind(ipr, index: int) -> str | None:
    """An interface's link kind ("veth", "gre", ...), None for a plain device (lo, eth)."""
    info = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def create_overlay(name: str, mtu: int = 1400, ipv6: bool = False) -> str:
    """The overlay veth pair name <-> name-dp, NOARP, up, offloads off on name.
    IPv6 stays on for name with ipv6 (an IPv6 overlay: its addresses, its link-local
    address, the ICMPv6 the encap sends back), never on name-dp.  Returns the
    data-plane end's name.  Existing pairs are kept (adoption)."""
    peer = f"{name}-dp"
    if len(peer) > 15:
        raise XdmvpnError(f"tunnel interface name {name!r} too long (max 12 characters)")
    with _ipr() as ipr:
        mine, theirs = ipr.link_lookup(ifname=name), ipr.link_lookup(ifname=peer)
        if not mine and not theirs:
            ipr.link("add", ifname=name, kind="veth", peer=peer)
        elif not (mine and theirs and _kind(ipr, mine[0]) == "veth"
                  and _kind(ipr, theirs[0]) == "veth"):
            # lo, the underlay interface, another tool's device: never taken over
            raise XdmvpnError(f"interface {name if mine else peer} exists and is not an "
                              f"xdmvpn overlay (a veth pair {name} <-> {peer}): give "
                              "[tunnel] name another value, or delete it")
        a, b = ipr.link_lookup(ifname=name)[0], ipr.link_lookup(ifname=peer)[0]
        up = IFF_NOARP | IFF_UP
        ipr.link("set", index=a, mtu=mtu, flags=up, change=up)
        ipr.link("set", index=b, mtu=mtu + DP_MTU_HEADROOM, flags=up, change=up)
    if ipv6 and mtu < IPV6_MIN_MTU:
        raise XdmvpnError(f"tunnel MTU {mtu} is below IPv6's minimum of {IPV6_MIN_MTU}: "
                          f"an IPv6 overlay needs mtu >= {IPV6_MIN_MTU}")
    _sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "0" if ipv6 else "1", missing_ok=True)
    _sysctl(f"net/ipv6/conf/{peer}/disable_ipv6", "1", missing_ok=True)
    # The encap program sees what the stack hands to the veth: with checksum
    # and segmentation offloads on, that would be unfinished packets.
    if shutil.which("ethtool"):
        subprocess.run(["ethtool", "-K", name, "tx", "off", "tso", "off", "gso", "off"],
                       capture_output=True, check=False)
    else:
        log.warning("ethtool missing: offloads stay on for %s", name)
    return peer


def delete_link(name: str) -> None:
    """Delete interface `name` if it is there (the overlay pair goes with either end)."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])


def _sysctl(path: str, value: str, missing_ok: bool = False) -> None:
    p = Path("/proc/sys") / path
    try:
        p.write_text(value)
    except FileNotFoundError:
        if not missing_ok:
            raise XdmvpnError(f"sysctl {path} missing") from None


def enable_forwarding(ifname: str) -> None:
    """bpf_fib_lookup answers only for interfaces with IPv4 forwarding on."""
    _sysctl(f"net/ipv4/conf/{ifname}/forwarding", "1")


def enable_forwarding6(ifname: str) -> None:
    """... and, for an IPv6 lookup, IPv6 forwarding on (the interface then acts as a
    router's: no SLAAC from router advertisements unless accept_ra is 2)."""
    _sysctl(f"net/ipv6/conf/{ifname}/forwarding", "1")


def ensure_bpffs() -> None:
    if os.path.ismount(BPFFS):
        with open("/proc/mounts") as f:
            if any(l.split()[1] == str(BPFFS) and l.split()[2] == "bpf" for l in f):
                return
    BPFFS.mkdir(parents=True, exist_ok=True)
    rc = subprocess.run(["mount", "-t", "bpf", "bpf", str(BPFFS)], capture_output=True, text=True)
    if rc.returncode != 0:
        raise XdmvpnError(f"bpffs not mounted at {BPFFS} and mounting failed: "
                          f"{rc.stderr.strip()}; mount -t bpf bpf {BPFFS}")


def pin_dir(tunnel: str) -> Path:
    return BPFFS / "xdmvpn" / tunnel


def pinned_map_layout(path: Path) -> tuple[int, int, int, int, int]:
    """(map type, key size, value size, max entries, flags) of the map pinned at path."""
    fd = libbpf.pinned(str(path))
    try:
        return libbpf.map_info(fd)
    finally:
        os.close(fd)


def check_pins(tunnel: str) -> None:
    """A one-line XdmvpnError when a map pinned for tunnel has another layout than this
    version's (abi.MAPS): bcc reuses a pin whatever its layout."""
    d = pin_dir(tunnel)
    for spec in abi.MAPS:
        path = d / spec.name
        if not path.exists():
            continue
        try:
            have = pinned_map_layout(path)
        except OSError as exc:
            raise XdmvpnError(f"cannot read pinned map {path}: {exc}") from None
        want = (int(spec.type), spec.key_size, spec.value_size, spec.max_entries, spec.flags)
        if have != want:
            raise XdmvpnError(
                f"pinned map {path} has another layout (type, key, value, entries, flags "
                f"{have}, this version {want}): pins of an older version; stop it and remove "
                f"{d} before starting this one (peers' mappings come back as they register)")


def remove_pins(tunnel: str) -> None:
    """The tunnel's pinned maps and programs (<pin dir>/progs/), and the directory."""
    d = pin_dir(tunnel)
    if d.exists():
        for p in d.iterdir():
            if p.is_dir():
                for q in p.iterdir():
                    q.unlink()
                p.rmdir()
            else:
                p.unlink()
        d.rmdir()
