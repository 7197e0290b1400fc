"""One tunnel's data plane: overlay pair, programs, attachments, pinned maps.

``TunnelDataplane(...).start()`` builds everything, or adopts what a previous
controller left (pinned maps, attached programs): the maps are reused, the
programs replaced atomically, so forwarding never stops.  ``stop()`` leaves
forwarding running (controller restart); ``destroy()`` removes it all.

The programs are compiled and loaded in a short-lived child (loader.py), which pins
maps and programs; this process reaches both through their pins (pinned.py) and never
imports bcc, so a daemon does not keep LLVM resident.
"""

from __future__ import annotations

import dataclasses

from ..errors import XdmvpnError
from . import attach, build, loader
from .libbpf import prog_info
from .maps import SLOT_TABLES, DataplaneMaps
from .pinned import PinnedModule, PinnedProgram, open_programs


@dataclasses.dataclass
class TunnelDataplane:
    name: str                      # overlay interface, e.g. dmvpn0; pins under its name
    underlay: str                  # NBMA interface, e.g. eth0
    local_nbma: str                # own NBMA address, IPv4 or IPv6
    gre_key: int | None = None
    redirect: bool = False
    trigger_interval_ms: int = 1000
    ttl: int = 64                  # 0: copy the inner packet's TTL
    df: bool | str = True          # True/False/"inherit" (also "set"/"clear")
    adjust_mss: int = 0
    nhrp_max_send: int = 100       # packets ...
    nhrp_max_send_every: float = 10  # ... per this many seconds (config: max-send.interval)
    nhrp_unknown_budget: int = 10000  # packets from all unknown sources together ...
    nhrp_unknown_every: float = 1     # ... per this many seconds
    nexthop_cache_ms: int = 1000
    mtu: int = 1400
    xdp_mode: str = "native"
    ipsec: bool = False            # an [ipsec] profile: IPsec peers' GRE only through xfrm
    esp_rx: bool = False           # the kernel has ESP: receive decrypted GRE on <name>-rx
    pin_name: str | None = None    # pins under /sys/fs/bpf/xdmvpn/<pin_name or name>
    local_nbma6: str | None = None  # an IPv6 NBMA address besides an IPv4 local_nbma
    overlay_ipv6: bool = False     # IPv6 on the tunnel interface (an IPv6 overlay)

    def __post_init__(self):
        self.module: PinnedModule | None = None
        self.maps: DataplaneMaps | None = None
        self.progs: dict[str, PinnedProgram] = {}
        self.xdp_used_mode: str | None = None
        self.loaded: loader.LoadResult | None = None    # the last child's timings

    @property
    def pin_key(self) -> str:
        return self.pin_name or self.name

    @property
    def dp_name(self) -> str:
        return f"{self.name}-dp"

    @property
    def rx_name(self) -> str:
        return f"{self.name}-rx"

    @property
    def rx6_name(self) -> str:
        return f"{self.name}-r6"

    def _settings(self) -> dict:
        return dict(local_nbma=self.local_nbma, local_nbma6=self.local_nbma6,
                    gre_key=self.gre_key, redirect=self.redirect,
                    trigger_interval_ms=self.trigger_interval_ms, ttl=self.ttl, df=self.df,
                    adjust_mss=self.adjust_mss, nhrp_max_send=self.nhrp_max_send,
                    nhrp_max_send_every=self.nhrp_max_send_every,
                    nhrp_unknown_budget=self.nhrp_unknown_budget,
                    nhrp_unknown_every=self.nhrp_unknown_every,
                    nexthop_cache_ms=self.nexthop_cache_ms, ipsec=self.ipsec)

    def check(self) -> None:
        """One-line XdmvpnError for a bad setting, before anything is created."""
        build.DataplaneConfig(**self._settings()).cflags()

    def config(self) -> build.DataplaneConfig:
        return build.DataplaneConfig(
            underlay_ifindex=attach.ifindex(self.underlay),
            overlay_ifindex=attach.ifindex(self.dp_name),
            tunnel_ifindex=attach.ifindex(self.name),
            overlay_mac=attach.mac_of(self.name),
            overlay_dp_mac=attach.mac_of(self.dp_name),
            pin_dir=str(attach.pin_dir(self.pin_key)),
            **self._settings(),
        )

    def start(self) -> "TunnelDataplane":
        build.check_environment(bcc=False)      # the loader child imports it
        self.check()
        attach.ensure_bpffs()
        attach.ifindex(self.underlay)  # one-line error when missing
        attach.pin_dir(self.pin_key).mkdir(parents=True, exist_ok=True)
        attach.check_pins(self.pin_key)          # before anything changes
        attach.create_overlay(self.name, self.mtu, ipv6=self.overlay_ipv6)
        attach.enable_forwarding(self.underlay)
        attach.enable_forwarding(self.name)      # the encap's kernel-route lookup
        if build.local_nbma_pair(self.local_nbma, self.local_nbma6)[1] is not None:
            attach.enable_forwarding6(self.underlay)   # fib lookups toward IPv6 NBMA
        if self.overlay_ipv6:
            attach.enable_forwarding6(self.name)       # ... and of IPv6 kernel routes
        if self.ipsec:
            attach.prepare_ipsec(self.dp_name)
            if self.esp_rx:                    # before anything is attached: may fail
                attach.create_esp_rx(self.rx_name)
        cfg = self.config()
        pins = attach.pin_dir(self.pin_key)
        # per-slot tables the loader creates now are zero: no slot of theirs to clear
        fresh = not any((pins / name).exists() for name in SLOT_TABLES)
        # The child fills the tail-call targets into the (pinned, shared) program arrays
        # before the new entry programs replace the old ones here.
        self.loaded = loader.load(cfg)
        self.progs = open_programs(pins)
        self.module = PinnedModule(pins)
        self.maps = DataplaneMaps(self.module)
        self.maps.sync_known()       # adopted pins: NHRP admission follows the entries
        self.maps.sync_slots(cleared=fresh)   # slots in use; never-taken ones zero?
        self._make_gre_sinks()               # before XDP passes NHRP up to ip_gre
        # Receiving ends first, then the programs that send to them.
        attach.attach_xdp(self.name, self.progs["xdmvpn_xdp_pass"], "native")
        attach.attach_tc_ingress(self.dp_name, self.progs["xdmvpn_tc_encap"])
        if self.ipsec:
            attach.attach_tc_egress(self.underlay, self.progs["xdmvpn_tc_guard"])
        else:
            attach.detach_tc_egress(self.underlay)
        if self.ipsec and self.esp_rx:
            attach.attach_tc_ingress(self.rx_name, self.progs["xdmvpn_tc_esp_rx"])
        self.xdp_used_mode = attach.attach_xdp(self.underlay, self.progs["xdmvpn_xdp_underlay"],
                                               self.xdp_mode)
        return self

    def _make_gre_sinks(self) -> None:
        """GRE sinks for the families of our NBMA addresses whose GRE module the kernel has
        loaded (the ESP receive device is IPv4's when there is one)."""
        v4, v6 = build.local_nbma_pair(self.local_nbma, self.local_nbma6)
        wanted = []
        if int(v4) and not (self.ipsec and self.esp_rx):
            wanted.append((4, self.rx_name))
        if v6 is not None:
            wanted.append((6, self.rx6_name))
        for version, name in wanted:
            if attach.gre_loaded(version):
                attach.create_gre_sink(name, version, self.progs["xdmvpn_tc_sink"])

    def stop(self) -> None:
        """Forget the programs here; they stay attached and the maps pinned."""
        if self.module is not None:
            self.module.cleanup()
        for prog in self.progs.values():
            prog.close()
        self.module = None
        self.maps = None

    def destroy(self) -> None:
        """Detach everything, delete the overlay pair, remove the pins."""
        attach.detach_xdp(self.underlay)
        attach.detach_tc_egress(self.underlay)
        attach.delete_link(self.rx_name)
        attach.delete_link(self.rx6_name)
        attach.detach_tc(self.dp_name)
        attach.delete_link(self.name)
        self.stop()
        attach.remove_pins(self.pin_key)

    def program_info(self) -> dict:
        if not self.progs:
            raise XdmvpnError("data plane not started")
        return {n: prog_info(fn.fd) for n, fn in self.progs.items()}
