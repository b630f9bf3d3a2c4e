"""Long polling for pop receives (asyncio): wait until new messages are dispatched, or until an
in-flight message's invisible time ends, or the poll time runs out.

Owns only the waiting: the receive itself is `PopService.receive` (run in a thread), and the
wake-ups come from the store's dispatch listener. Shared by the broker's BrokerPop service and
the proxy's local mode.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from orbitmq.broker.pop_service import PopService, Received


class PopPoller:
    """Create on the event loop that will await `receive`."""

    def __init__(self, pops: PopService) -> None:
        self.pops = pops
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self.waiting = 0   # receives waiting for a dispatch; read without a lock by the dispatcher (a hint)
        pops.store.add_dispatch_listener(self._on_dispatch)

    def _on_dispatch(self, _queues: Any) -> None:
        # nobody waits: no wake-up of the loop per dispatch round (every single send would pay for it)
        if self.waiting > 0 and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_new(self, timeout: float) -> None:
        """Return when new messages were dispatched, or after `timeout` seconds."""
        self.waiting += 1
        try:
            await asyncio.wait_for(self._event.wait(), max(0.0, timeout))
        except TimeoutError:
            pass
        finally:
            self.waiting -= 1

    async def receive(self, group: str, topic: str, queue_ids: list[int], batch: int, invisible_ms: int,
                      max_attempts: int, fifo: bool, tags: set[str] | None, poll_ms: float) -> tuple[list[Received], int]:
        """Messages (possibly none once `poll_ms` passed) and the time (ms) they were taken at."""
        self.waiting += 1      # from before the first read: a dispatch during it sets the event we wait on
        try:
            return await self._receive(group, topic, queue_ids, batch, invisible_ms, max_attempts, fifo, tags, poll_ms)
        finally:
            self.waiting -= 1

    async def _receive(self, group: str, topic: str, queue_ids: list[int], batch: int, invisible_ms: int,
                       max_attempts: int, fifo: bool, tags: set[str] | None,
                       poll_ms: float) -> tuple[list[Received], int]:
        deadline = time.monotonic() + max(0.0, poll_ms) / 1000
        while True:
            ev = self._event
            now = int(time.time() * 1000)
            got, wake = await asyncio.to_thread(self.pops.receive, group, topic, queue_ids, batch, invisible_ms, now,
                                                max_attempts, fifo, tags)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got, now
            wait = left if wake is None else min(left, max(0.01, (wake - time.time() * 1000) / 1000))
            try:
                await asyncio.wait_for(ev.wait(), min(wait, 1.0))
            except TimeoutError:
                pass
