"""Pure checks over what a run observed: acknowledged versus delivered messages, and the
controller's master history. No I/O; the demo (and later the chaos checker) feed them data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeliveryReport:
    """Acknowledged sends compared with what consumers received."""

    acked: int
    delivered: int
    lost: list[str] = field(default_factory=list)        # acknowledged, never delivered
    duplicated: dict[str, int] = field(default_factory=dict)  # delivered more than once: id -> times

    @property
    def ok(self) -> bool:
        return not self.lost


def compare_delivery(acked_ids: Iterable[str], delivered_ids: Iterable[str]) -> DeliveryReport:
    """Every acknowledged id must be delivered at least once (duplicates are allowed and counted)."""
    acked = set(acked_ids)
    counts = Counter(delivered_ids)
    lost = sorted(acked - counts.keys())
    dups = {k: n for k, n in counts.items() if n > 1}
    return DeliveryReport(acked=len(acked), delivered=sum(counts.values()), lost=lost, duplicated=dups)


@dataclass(frozen=True)
class MasterChange:
    broker_set: str
    epoch: int
    master_id: int        # -1: the election failed (no master in this epoch)


def epoch_conflicts(changes: Iterable[MasterChange]) -> list[str]:
    """Violations of "at most one master per epoch" and "epochs only grow", in words (empty = none)."""
    seen: dict[tuple[str, int], int] = {}
    last_epoch: dict[str, int] = {}
    problems = []
    for c in changes:
        if c.broker_set in last_epoch and c.epoch <= last_epoch[c.broker_set]:
            problems.append(f"{c.broker_set}: epoch {c.epoch} after epoch {last_epoch[c.broker_set]}")
        last_epoch[c.broker_set] = max(c.epoch, last_epoch.get(c.broker_set, c.epoch))
        if c.master_id < 0:
            continue
        key = (c.broker_set, c.epoch)
        if key in seen and seen[key] != c.master_id:
            problems.append(f"{c.broker_set}: epoch {c.epoch} has masters {seen[key]} and {c.master_id}")
        seen.setdefault(key, c.master_id)
    return problems
