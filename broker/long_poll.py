"""Long polling for pulls: parked pulls per (topic, queue) woken by newly dispatched messages.

Owns: the set of waiting pulls and waking them. A pull that found nothing parks with `park(key)`,
re-reads the store once (so a dispatch racing the park is never missed) and awaits the future.
`notify_threadsafe(keys)` is called after the store made messages visible: by its dispatcher
thread (then the wake-up is handed to the loop), or on the loop itself when the framed port ran the
dispatch round there (then the waiters are woken at once, no loop iteration later). It costs nothing
while nobody waits. A parked pull resumes one loop iteration after its wake-up (its future, with a
timer for the timeout; no wait_for/shield layers). Never sleeps in a loop and never reads the store.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

Key = tuple[str, int]


class LongPollWaiters:
    """Parked pulls keyed by (topic, queue_id); all methods but notify_threadsafe run on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()   # made on the loop (BrokerService.__init__)
        self._waiters: dict[Key, list[asyncio.Future]] = {}
        self.parked = 0  # read without a lock by the dispatcher thread: a hint, rechecked on the loop

    def park(self, key: Key) -> asyncio.Future:
        """Register a waiter before re-reading the store; await the future (with a timeout) after."""
        fut = self._loop.create_future()
        self._waiters.setdefault(key, []).append(fut)
        self.parked += 1
        return fut

    def unpark(self, key: Key, fut: asyncio.Future) -> None:
        """Forget a waiter that timed out or was answered by its re-read."""
        lst = self._waiters.get(key)
        if lst is not None and fut in lst:
            lst.remove(fut)
            self.parked -= 1
            if not lst:
                del self._waiters[key]

    def notify(self, keys: Iterable[Key]) -> int:
        """Wake every waiter of these queues; returns how many were woken."""
        woken = 0
        for key in keys:
            lst = self._waiters.pop(key, None)
            if not lst:
                continue
            self.parked -= len(lst)
            for fut in lst:
                if not fut.done():
                    fut.set_result(True)
                    woken += 1
        return woken

    def notify_threadsafe(self, keys: Iterable[Key]) -> None:
        """From any thread: wake these queues' waiters (now if called on the loop's own thread)."""
        if self.parked <= 0:
            return
        if threading.get_ident() == self._loop_thread:
            self.notify(keys)
            return
        ks = list(keys)
        try:
            self._loop.call_soon_threadsafe(self.notify, ks)
        except RuntimeError:
            pass  # loop closed during shutdown

    def wake_all(self) -> None:
        """Shutdown: answer every parked pull now."""
        self.notify(list(self._waiters))

    async def wait(self, fut: asyncio.Future, timeout: float) -> bool:
        """Await a parked future up to `timeout` seconds; True if woken by a notify."""
        if timeout <= 0 or fut.done():
            return fut.done()
        timer = self._loop.call_later(timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(False)
