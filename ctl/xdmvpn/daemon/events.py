"""Waking up for data-plane events: the ring buffer's epoll descriptor (libbpf's
ring_buffer__epoll_fd on the manager bcc made), so the asyncio loop sleeps until the kernel
has something for us instead of polling."""

from __future__ import annotations

from ..dataplane import libbpf


def ring_epoll_fd(module) -> int | None:
    """The epoll fd of the bcc module's ring buffers, or None (then the caller polls)."""
    manager = getattr(module, "_ringbuf_manager", None)
    if not manager:
        return None
    return libbpf.ring_epoll_fd(manager)
