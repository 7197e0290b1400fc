"""xdmvpn: Dynamic Multipoint VPN for Linux (NHRP control plane, eBPF mGRE data plane)."""

__version__ = "0.1.0"
