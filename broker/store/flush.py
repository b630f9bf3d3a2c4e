"""The flush thread: periodic (async mode) or group-commit (sync mode) fdatasync of the commitlog.

Owns: the flushed offset and everyone waiting for it. In sync mode a waiter registers the end
offset it needs and wakes the thread; the thread fdatasyncs everything appended so far (all the
appends that arrived meanwhile share that one fdatasync) and then releases every waiter it
covered: threads through a condition, asyncio futures with one `loop.call_soon_threadsafe` per
event loop per flush. In async mode the thread flushes every `interval_s`; waiters wait for it.
It never appends and never touches indexes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("orbitmq.broker.store.flush")


def _resolve(futs: list[asyncio.Future]) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)


class Flusher:
    """`flush_fn(start, end)` makes [start, end) durable; `end_fn()` is the current end of the log."""

    def __init__(self, flush_fn: Callable[[int, int], None], end_fn: Callable[[], int], mode: str = "async",
                 interval_s: float = 0.5, flushed: int = 0) -> None:
        if mode not in ("async", "sync"):
            raise ValueError(f"flush mode must be async or sync, got {mode!r}")
        self.mode = mode
        self.interval_s = interval_s
        self._flush_fn = flush_fn
        self._end_fn = end_fn
        self.flushed = flushed
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._requested = flushed
        self._futs: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._stop = False
        self._thread: threading.Thread | None = None
        self.flushes = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="orbitmq-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Flush what was appended, release everyone and end the thread."""
        with self._lock:
            self._stop = True
            self._work.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush_now()

    def reset(self, offset: int) -> None:
        """After a truncation: nothing beyond `offset` is flushed any more."""
        with self._lock:
            self.flushed = min(self.flushed, offset)
            self._requested = min(self._requested, offset)

    # ---- waiting ------------------------------------------------------------------------------------

    def wait_flushed(self, end: int, timeout: float | None = None) -> bool:
        """Block until everything before `end` is on disk; False on timeout."""
        if self.flushed >= end:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if end > self._requested:
                self._requested = end
                self._work.notify()
            while self.flushed < end:
                if self._stop and self._thread is None:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._done.wait(left if left is not None else 1.0)
            return True

    async def flushed_async(self, end: int) -> None:
        """Await durability of everything before `end` (resolved from the flush thread)."""
        if self.flushed >= end:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self.flushed >= end:
                return
            self._futs.append((end, loop, fut))
            if end > self._requested:
                self._requested = end
                self._work.notify()
        await fut

    # ---- the thread ---------------------------------------------------------------------------------

    def flush_now(self) -> int:
        """Flush everything appended so far on the caller's thread; returns the flushed offset."""
        target = self._end_fn()
        start = self.flushed
        if target > start:
            self._flush_fn(start, target)
        self._release(target)
        return target

    def _release(self, target: int) -> None:
        ready: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        with self._lock:
            if target > self.flushed:
                self.flushed = target
                self.flushes += 1
            self._done.notify_all()
            if self._futs:
                keep = []
                for item in self._futs:
                    if item[0] <= self.flushed:
                        ready.setdefault(item[1], []).append(item[2])
                    else:
                        keep.append(item)
                self._futs = keep
        for loop, futs in ready.items():
            try:
                loop.call_soon_threadsafe(_resolve, futs)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _run(self) -> None:
        sync = self.mode == "sync"
        while True:
            with self._lock:
                if sync:
                    if self._requested <= self.flushed and not self._stop:
                        self._work.wait(self.interval_s)
                elif not self._stop:
                    self._work.wait(self.interval_s)  # a waiter may wake us early: flush then
                if self._stop:
                    return
            try:
                self.flush_now()
            except OSError as e:  # a segment deleted under us, a disk error: report, keep going
                self.error = e
                log.error("flush failed: %s", e)
                time.sleep(0.05)
