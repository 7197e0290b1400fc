"""The C library, loaded once through ctypes: setns for the namespace helpers (netns),
sendmmsg and recvmmsg for the batch sockets (mmsg), prctl for the BPF loader child
(dataplane.loader)."""

from __future__ import annotations

import ctypes

libc = ctypes.CDLL(None, use_errno=True)
