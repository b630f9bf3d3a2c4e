"""The master's sync-state-set rules (pure): who is in sync, when to shrink or expand the set, and
the confirm offset.

Owns: per-replica ack offsets and caught-up times, the shrink rule (a member not caught up for
`max_lag_s`, or whose stream broke, is proposed for removal), the expand rule (a connected non-learner
whose ack reaches both the confirm offset and the current epoch's start is proposed for
addition), one alter in flight at a time, acking against the union of the old and proposed sets
while an alter is pending or after it failed (RocketMQ #5663), and the confirm offset = the offset
every member of that union holds (never moving backwards, never past a member's ack: #6662).
Learners are never members. Time is passed in; no I/O, no clocks, no threads. The shell commits
proposals through the controller and reports back with `alter_done` / `alter_failed` / `adopt`.
"""

from __future__ import annotations

from dataclasses import dataclass


class SyncStateError(ValueError):
    """A call that breaks the set's invariants (our own bug, not a peer's)."""


@dataclass
class Replica:
    """What the master knows of one follower or learner."""

    broker_id: int
    learner: bool = False
    connected: bool = False
    ever_connected: bool = False  # connected at least once under this master
    ack: int = -1                 # highest offset it reported holding (-1: none yet)
    caught_up_at: float = 0.0     # last time it held everything the master had
    prev_master_max: int = 0      # the master's max at its previous ack
    prev_ack_time: float = 0.0


@dataclass(frozen=True)
class Proposal:
    """An alter to commit through the controller: the new set, and why."""

    members: frozenset[int]
    removed: frozenset[int]
    added: frozenset[int]


class SyncStateSet:
    """The master-side view of one broker set's sync-state-set."""

    def __init__(self, master_id: int, master_epoch: int, epoch_start: int, members: frozenset[int] | set[int],
                 sss_epoch: int, max_lag_s: float, now: float, confirm_offset: int = 0) -> None:
        if max_lag_s <= 0:
            raise SyncStateError("max_lag_s must be > 0")
        self.master_id = master_id
        self.master_epoch = master_epoch
        self.epoch_start = epoch_start
        self.members: frozenset[int] = frozenset(members) | {master_id}
        self.sss_epoch = sss_epoch
        self.max_lag_s = max_lag_s
        self.replicas: dict[int, Replica] = {}
        self.pending: Proposal | None = None
        self.sticky: frozenset[int] = frozenset()  # members kept for acking after a failed alter
        self._confirm = confirm_offset
        for m in self.members - {master_id}:
            self.replicas[m] = Replica(m, caught_up_at=now, prev_ack_time=now)

    # ---- inputs -----------------------------------------------------------------------------------

    def replica(self, broker_id: int) -> Replica:
        if broker_id == self.master_id:
            raise SyncStateError(f"broker {broker_id} is the master itself")
        r = self.replicas.get(broker_id)
        if r is None:
            r = self.replicas[broker_id] = Replica(broker_id)
        return r

    def connected(self, broker_id: int, learner: bool, now: float) -> None:
        r = self.replica(broker_id)
        r.learner = learner
        r.connected = True
        r.ever_connected = True
        r.prev_ack_time = now

    def disconnected(self, broker_id: int) -> None:
        r = self.replicas.get(broker_id)
        if r is not None:
            r.connected = False

    def on_ack(self, broker_id: int, offset: int, master_max: int, now: float) -> None:
        """A replica reported holding [0, offset) while the master's log ended at `master_max`."""
        r = self.replica(broker_id)
        r.ack = offset
        if offset >= master_max:
            r.caught_up_at = now
        elif offset >= r.prev_master_max:
            # it now holds everything the master had at its previous ack
            r.caught_up_at = max(r.caught_up_at, r.prev_ack_time)
        r.prev_master_max = master_max
        r.prev_ack_time = now

    def tick(self, master_max: int, now: float) -> None:
        """Nothing new to send: replicas holding the master's whole log are caught up now."""
        for r in self.replicas.values():
            if r.connected and r.ack >= master_max:
                r.caught_up_at = now

    # ---- the set ----------------------------------------------------------------------------------

    def ack_set(self) -> frozenset[int]:
        """Whose acks a send waits for: the set, plus the proposed set while an alter is in flight,
        plus the members kept after a failed alter."""
        s = self.members | self.sticky
        if self.pending is not None:
            s |= self.pending.members
        return s

    def holding(self, broker_id: int, master_max: int) -> int:
        """The offset `broker_id` is known to hold (-1 if unknown)."""
        if broker_id == self.master_id:
            return master_max
        r = self.replicas.get(broker_id)
        return r.ack if r is not None else -1

    def confirm_offset(self, master_max: int) -> int:
        """The offset every member of the ack set holds; monotonic, never past any member's ack,
        unchanged while a member has not reported yet."""
        low = master_max
        for m in self.ack_set():
            h = self.holding(m, master_max)
            if h < 0:
                return self._confirm
            low = min(low, h)
        if low > self._confirm:
            self._confirm = low
        return self._confirm

    def propose(self, master_max: int, now: float) -> Proposal | None:
        """The alter to commit now (shrink and/or expand), or None; at most one in flight."""
        if self.pending is not None:
            return None
        confirm = self.confirm_offset(master_max)
        removed = set()
        for m in self.members - {self.master_id}:
            r = self.replicas.get(m)
            if r is None or r.learner or now - r.caught_up_at > self.max_lag_s:
                removed.add(m)
            elif not r.connected and r.ever_connected:
                removed.add(m)  # its stream broke: do not block every send on it
        added = set()
        for r in self.replicas.values():
            if r.broker_id in self.members or r.learner or not r.connected:
                continue
            if r.ack >= confirm and r.ack >= self.epoch_start and now - r.caught_up_at <= self.max_lag_s:
                added.add(r.broker_id)
        if not removed and not added:
            return None
        new = (self.members - removed) | added
        self.pending = Proposal(frozenset(new), frozenset(removed), frozenset(added))
        return self.pending

    def alter_done(self, members: frozenset[int] | set[int], sss_epoch: int) -> None:
        """The controller committed `members` at `sss_epoch`."""
        if self.master_id not in members:
            raise SyncStateError(f"the set {sorted(members)} lacks its master {self.master_id}")
        if sss_epoch < self.sss_epoch:
            return  # a newer set was adopted meanwhile
        self.members = frozenset(members)
        self.sss_epoch = sss_epoch
        self.pending = None
        self.sticky = frozenset()

    def alter_failed(self) -> None:
        """The alter was rejected or its outcome is unknown: keep acking against the union."""
        if self.pending is not None:
            self.sticky = self.sticky | self.members | self.pending.members
        self.pending = None

    def adopt(self, members: frozenset[int] | set[int], sss_epoch: int) -> bool:
        """The controller's current set (from a pull or a notification) replaces ours if newer."""
        if sss_epoch < self.sss_epoch:
            return False
        if sss_epoch == self.sss_epoch and (self.pending is not None or not self.sticky):
            return False  # same epoch: only clears what a failed alter left behind
        if self.master_id not in members:
            return False  # not ours to adopt: we are no longer this set's master
        self.alter_done(members, sss_epoch)
        return True

    def in_sync_followers(self) -> list[int]:
        return sorted(self.members - {self.master_id})
