"""When a send whose data ends at offset X may be acknowledged (pure), and the master's lease.

Owns: the acknowledgement policy (`all`: every member of the sync-state-set ack set holds X and
the set has at least `min_replicas` members; `count`: at least N members of the set hold X), the
verdict a waiting send gets (ACK, WAIT, or NOT_ENOUGH replicas), and the lease rule by which a
master that has not renewed its standing with the controller within `lease_s` stops
acknowledging (self-fencing). No I/O, no clocks: offsets and times are passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MODES = ("all", "count")


class Verdict(enum.Enum):
    ACK = "ACK"               # enough replicas hold the data: reply success
    WAIT = "WAIT"             # not yet: keep waiting until the deadline (then REPLICATION_TIMEOUT)
    NOT_ENOUGH = "NOT_ENOUGH"  # the set is too small to ever satisfy the policy: IN_SYNC_REPLICAS_NOT_ENOUGH


@dataclass(frozen=True)
class AckPolicy:
    """mode `all` (default; no acknowledged send is ever lost) or `count`; `min_replicas` is the
    least number of in-sync replicas (master included) that must hold a send (-1: 2 for a set of
    3 or more replicas, else 1)."""

    mode: str = "all"
    min_replicas: int = -1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"ack mode must be one of {MODES}, got {self.mode!r}")
        if self.min_replicas == 0 or self.min_replicas < -1:
            raise ValueError("min_replicas must be >= 1, or -1 for automatic")

    def required(self, replica_count: int) -> int:
        """How many replicas must hold a send, given how many non-learner replicas the set has."""
        if self.min_replicas > 0:
            return self.min_replicas
        return 2 if replica_count >= 3 else 1


def evaluate(policy: AckPolicy, end_offset: int, ack_set: Iterable[int], holding: Callable[[int], int],
             replica_count: int) -> Verdict:
    """The verdict for a send ending at `end_offset`; `holding(id)` is what replica `id` holds
    (the master's own max for the master, -1 if unknown); `replica_count` is the number of
    non-learner replicas of the set (for the automatic minimum)."""
    members = list(ack_set)
    need = policy.required(replica_count)
    if len(members) < need:
        return Verdict.NOT_ENOUGH
    holders = sum(1 for m in members if holding(m) >= end_offset)
    if policy.mode == "all":
        return Verdict.ACK if holders == len(members) else Verdict.WAIT
    return Verdict.ACK if holders >= need else Verdict.WAIT


def acknowledged_upto(policy: AckPolicy, ack_set: Iterable[int], holding: Callable[[int], int],
                      replica_count: int) -> int | None:
    """The highest end offset a send may have and be acknowledged now (`evaluate` gives ACK for
    every end offset <= it, WAIT above it); None if the set is too small (NOT_ENOUGH)."""
    members = list(ack_set)
    need = policy.required(replica_count)
    if len(members) < need:
        return None
    held = sorted((holding(m) for m in members), reverse=True)
    if policy.mode == "all":
        return held[-1]
    return held[need - 1]


@dataclass
class Lease:
    """A master's standing with the controller: valid for `lease_s` from the moment the last
    successfully answered heartbeat was *sent* (so the master's lease ends no later than the
    controller's view of it). Must be shorter than the controller's heartbeat timeout."""

    lease_s: float
    renewed_at: float | None = None

    def renew(self, sent_at: float) -> None:
        if self.renewed_at is None or sent_at > self.renewed_at:
            self.renewed_at = sent_at

    def valid(self, now: float) -> bool:
        return self.renewed_at is not None and now - self.renewed_at < self.lease_s

    def remaining(self, now: float) -> float:
        if self.renewed_at is None:
            return 0.0
        return max(0.0, self.lease_s - (now - self.renewed_at))
