"""Our requests awaiting a reply, matched by request id (as FRR's reqid table does).

Each kind of request is a Pending subclass that knows which reply completes it, what an
error indication about it means and what happens when nobody answered in time; the table is
bounded and expires its entries (a heap on the deadline, lazy deletion)."""

from __future__ import annotations

import heapq
import itertools
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, ClassVar, Iterator

from ..inet import IPAddress
from ..nhrp import RequestReply


class Pending(ABC):
    """One request of ours. `rid` and `expires` are set when the table takes it."""
    reply_type: ClassVar[int]
    rid: int = 0
    expires: float = 0.0

    def accepts(self, pkt: RequestReply, observed: IPAddress) -> bool:
        """Is this reply, from `observed`, an answer to us? (Beyond the request id.)"""
        return True

    def error_from(self, observed: IPAddress) -> bool:
        """May an error indication from `observed` end this request?"""
        return True

    @abstractmethod
    def complete(self, pkt: RequestReply, observed: IPAddress) -> None:
        """The reply arrived."""

    @abstractmethod
    def fail(self, code: int) -> None:
        """An error indication about the request arrived."""

    @abstractmethod
    def expire(self, now: float) -> None:
        """Nobody answered before `expires`."""


class PendingTable:
    def __init__(self, cap: int, stats: Counter[Any]):
        self.cap = cap
        self.stats = stats
        self._by_id: dict[int, Pending] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._n = itertools.count()

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, rid: int) -> bool:
        return rid in self._by_id

    def __iter__(self) -> Iterator[Pending]:
        return iter(list(self._by_id.values()))

    def add(self, p: Pending, rid: int, expires: float) -> bool:
        """Take `p` under `rid` until `expires`; False (counted) when the table is full."""
        if len(self._by_id) >= self.cap:
            self.stats[("cap", "pending")] += 1
            return False
        p.rid, p.expires = rid, expires
        self._by_id[rid] = p
        heapq.heappush(self._heap, (expires, next(self._n), rid))
        if len(self._heap) > 4 * len(self._by_id) + 1024:
            self._heap = [(q.expires, next(self._n), r) for r, q in self._by_id.items()]
            heapq.heapify(self._heap)
        return True

    def get(self, rid: int) -> Pending | None:
        return self._by_id.get(rid)

    def discard(self, p: Pending) -> None:
        if self._by_id.get(p.rid) is p:
            del self._by_id[p.rid]

    def expire(self, now: float) -> None:
        """Tell every request whose deadline passed (after taking them all out: an expiry
        may send the request again, under a new id)."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            expires, _, rid = heapq.heappop(self._heap)
            p = self._by_id.get(rid)
            if p is not None and p.expires == expires:
                del self._by_id[rid]
                due.append(p)
        for p in due:
            p.expire(now)

    def next_expiry(self) -> float | None:
        while self._heap:
            expires, _, rid = self._heap[0]
            p = self._by_id.get(rid)
            if p is not None and p.expires == expires:
                return expires
            heapq.heappop(self._heap)
        return None
