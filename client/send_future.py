"""The future an async send returns: a `concurrent.futures.Future` that shares one Condition with
every other future of its producer, and a way to resolve a whole batch of them at once.

A plain Future makes a Condition (and its RLock) when it is created, which costs more than the rest
of queueing a message; a producer makes one future per message. `SendFuture` takes its producer's
shared Condition instead: waiting threads wake on any resolution and check their own future again
(`result`, `exception`), and `concurrent.futures.wait`/`as_completed` keep working (they rely on
the per-future waiters list, which set_result/set_exception still serve). `resolve` settles the
futures of one answered batch under one acquisition of that Condition, with one notify.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

_PENDING = "PENDING"
_FINISHED = "FINISHED"


class SendFuture(Future):
    """A Future whose Condition is shared (see the module docstring)."""

    def __init__(self, condition: threading.Condition) -> None:   # (not Future.__init__: no Condition of its own)
        self._condition = condition
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return super().exception(0)

    def _wait(self, timeout: float | None) -> None:
        with self._condition:
            if not self._condition.wait_for(self.done, timeout):
                raise FutureTimeout()


def resolve(condition: threading.Condition, futs: list[Future], results: Iterable[Any]) -> int:
    """Give futs[i] results[i] (as many as there are results; a future already done, such as one
    the caller cancelled, is skipped), under one hold of `condition` and with one notify; then run
    their callbacks. Returns how many results were given out."""
    n = 0
    set_ = []
    with condition:
        for f, r in zip(futs, results, strict=False):
            n += 1
            if f._state != _PENDING:
                continue
            f._result = r
            f._state = _FINISHED
            for w in f._waiters:
                w.add_result(f)
            set_.append(f)
        condition.notify_all()
    for f in set_:
        if f._done_callbacks:
            f._invoke_callbacks()
    return n
