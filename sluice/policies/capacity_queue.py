"""The queue of calls waiting for a model's capacity on this instance (the limits stage's
``queue``): best priority class first, each retrying its reservation as the head of the queue
until it passes, is refused for a reason waiting does not cure, or its wait runs out."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sluice.policies.ratelimit import Reservation


@dataclass(order=True)
class _Waiter:
    rank: int
    seq: int
    wake: asyncio.Event = field(compare=False, default_factory=asyncio.Event)


class CapacityQueue:
    """Calls waiting for a model's capacity on this instance, best priority class first."""

    def __init__(self, max_size: int, max_wait: float, *, poll: float = 0.1,
                 on_empty: Callable[[str], None] | None = None) -> None:
        self.max_size, self.max_wait, self.poll = max_size, max_wait, poll
        self.on_empty = on_empty  # told when the last waiter for an alias leaves
        self._heaps: dict[str, list[_Waiter]] = {}
        self._seq = itertools.count()

    def waiting(self, alias: str) -> int:
        return len(self._heaps.get(alias, ()))

    def classes(self, alias: str) -> str:
        """The priority classes waiting here for ``alias``, a digit each (``"02"``; ``""``: none)."""
        heap = self._heaps.get(alias)
        return "".join(sorted({str(w.rank) for w in heap})) if heap else ""

    def waiting_by_alias(self) -> dict[str, int]:
        return {alias: len(heap) for alias, heap in self._heaps.items()}

    def notify(self, alias: str) -> None:
        """Capacity was given back here: let the head try at once."""
        heap = self._heaps.get(alias)
        if heap:
            heap[0].wake.set()

    async def wait_turn(self, alias: str, rank: int, attempt: Callable[[], Awaitable[Reservation]],
                        retry_after: float, worth_waiting: Callable[[Reservation], bool] = lambda _r: True,
                        ) -> Reservation | None:
        """Retry ``attempt`` as the head of the queue until it passes, is refused for a reason
        waiting does not cure (``worth_waiting`` false: returned as is), or the wait runs out (None)."""
        heap = self._heaps.setdefault(alias, [])
        if len(heap) >= self.max_size:
            return None
        me = _Waiter(rank, next(self._seq))
        heapq.heappush(heap, me)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return None
                me.wake.clear()
                pause = left if heap[0] is not me else min(max(retry_after, 0.002), self.poll, left)
                try:
                    await asyncio.wait_for(me.wake.wait(), pause)
                except TimeoutError:
                    pass
                if heap[0] is not me or loop.time() >= deadline:
                    continue
                res = await attempt()
                if res.ok or not math.isfinite(res.retry_after) or not worth_waiting(res):
                    return res
                retry_after = res.retry_after
        finally:
            heap.remove(me)
            heapq.heapify(heap)
            if heap:
                heap[0].wake.set()
            else:
                self._heaps.pop(alias, None)
                if self.on_empty is not None:
                    self.on_empty(alias)


__all__ = ["CapacityQueue"]
