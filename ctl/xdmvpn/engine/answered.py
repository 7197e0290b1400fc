"""The stations that hold a binding of ours: every requester whose resolution request we
answered, by its NBMA address, with the prefix lengths we gave it. They are told to purge
it when we change or go away. Bounded (Limits.answered, Limits.answered_prefixes) and
expiring (what we gave lasts our holdtime, so after it there is nothing left to purge)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..inet import IPAddress
from .context import Context


@dataclass
class Answered:
    proto: IPAddress                     # the requester's protocol address
    lengths: set[int] = field(default_factory=set)
    expires: float = 0.0


class AnsweredTable:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._by_nbma: OrderedDict[IPAddress, Answered] = OrderedDict()   # oldest first

    def __len__(self) -> int:
        return len(self._by_nbma)

    def items(self) -> list[tuple[IPAddress, Answered]]:
        return list(self._by_nbma.items())

    def as_dict(self) -> dict[IPAddress, tuple[IPAddress, set[int]]]:
        return {n: (a.proto, set(a.lengths)) for n, a in self._by_nbma.items()}

    def record(self, nbma: IPAddress, proto: IPAddress, prefix_len: int) -> bool:
        ctx = self.ctx
        now = ctx.now()
        self.expire(now)
        a = self._by_nbma.get(nbma)
        if a is None or a.proto != proto:
            if a is None and len(self._by_nbma) >= ctx.p.limits.answered:
                ctx.stats[("cap", "answered")] += 1
                return False
            a = self._by_nbma[nbma] = Answered(proto)
        if prefix_len not in a.lengths and len(a.lengths) >= ctx.p.limits.answered_prefixes:
            ctx.stats[("cap", "answered_prefixes")] += 1
            return False
        a.lengths.add(prefix_len)
        a.expires = now + ctx.p.holdtime
        self._by_nbma.move_to_end(nbma)
        return True

    def expire(self, now: float) -> None:
        """Forget whoever's binding ran out (the oldest are first: O(expired))."""
        while self._by_nbma:
            nbma, a = next(iter(self._by_nbma.items()))
            if a.expires > now:
                return
            del self._by_nbma[nbma]

    def take(self) -> list[tuple[IPAddress, Answered]]:
        """Everything, emptying the table (to purge them all)."""
        self.expire(self.ctx.now())
        out = list(self._by_nbma.items())
        self._by_nbma.clear()
        return out
