"""Waking up for data-plane events: the ring buffer's epoll descriptor (libbpf's
ring_buffer__epoll_fd on the manager bcc made), so the asyncio loop sleeps until the kernel
has something for us instead of polling."""

from __future__ import annotations

import ctypes
import ctypes.util


def ring_epoll_fd(module) -> int | None:
    """The epoll fd of the bcc module's ring buffers, or None (then the caller polls)."""
    manager = getattr(module, "_ringbuf_manager", None)
    if not manager:
        return None
    for name in ("libbpf.so.1", ctypes.util.find_library("bpf")):
        if not name:
            continue
        try:
            fn = ctypes.CDLL(name).ring_buffer__epoll_fd
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p]
        fd = fn(manager)
        return fd if fd >= 0 else None
    return None
