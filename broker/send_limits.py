"""The broker's send admission, the shell over common/limits.py: the disk ratio and the bytes held
by sends waiting for their flush or replication.

Owns: reading the store's disk use (at most every `DISK_CHECK_S`, a statvfs) and the `ByteBudget`
of the send path. `admit(nbytes)` returns a refusal (DISK_FULL, BROKER_BUSY) before anything is
written, or takes the bytes; `release(nbytes)` when the send is answered. Never writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from orbitmq.common.limits import ByteBudget, LimitRefusal, disk_refusal

DISK_CHECK_S = 1.0


class SendLimits:
    def __init__(self, max_pending_bytes: int, disk_refuse_ratio: float,
                 disk_usage: Callable[[], tuple[int, int]]) -> None:
        self.budget = ByteBudget(max_pending_bytes)
        self.disk_refuse_ratio = disk_refuse_ratio
        self._disk_usage = disk_usage
        self._disk: tuple[float, LimitRefusal | None] = (float("-inf"), None)
        self.refused = {"BROKER_BUSY": 0, "DISK_FULL": 0}

    def disk(self) -> LimitRefusal | None:
        checked, refusal = self._disk
        now = time.monotonic()
        if now - checked >= DISK_CHECK_S:
            try:
                used, total = self._disk_usage()
            except OSError:
                used, total = 0, 0
            refusal = disk_refusal(used, total, self.disk_refuse_ratio)
            self._disk = (now, refusal)
        return refusal

    def admit(self, nbytes: int) -> LimitRefusal | None:
        refusal = self.disk() or self.budget.take(nbytes)
        if refusal is not None:
            self.refused[refusal.code] += 1
        return refusal

    def stats(self) -> dict[str, int]:
        """Counters for the broker's status and metrics."""
        return {"pending_send_bytes": self.budget.held, "sends_refused_busy": self.refused["BROKER_BUSY"],
                "sends_refused_disk_full": self.refused["DISK_FULL"]}

    def release(self, nbytes: int) -> None:
        self.budget.give(nbytes)
