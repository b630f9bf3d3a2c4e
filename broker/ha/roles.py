"""A replica's role (pure): the role enum, what a controller view asks of it, the transition
table, and where a new master's epoch starts.

Owns: `Role` (NONE while it does not know, MASTER, FOLLOWER, LEARNER; STANDALONE outside
controller mode), `decide(...)` (a view (master id, epoch, HA address, sync-state-set) -> one
`Change`), `TRANSITIONS` (role x change -> next role; a pair missing from it is a bug), and
`master_epoch_start` (a new master appends (epoch, its end) unless it restarted as master of
the same epoch). No I/O; the role manager carries the changes out.
"""

from __future__ import annotations

import enum

from orbitmq.broker.ha.epochs import EpochEntry


class Role(enum.Enum):
    NONE = "NONE"
    MASTER = "MASTER"
    FOLLOWER = "FOLLOWER"
    LEARNER = "LEARNER"
    STANDALONE = "STANDALONE"

    def __str__(self) -> str:
        return self.value


class Change(enum.Enum):
    IGNORE = "IGNORE"                  # a view older than the epoch we serve
    KEEP = "KEEP"                      # nothing changed for us
    ADOPT_SSS = "ADOPT_SSS"            # still master of this epoch: maybe a newer sync-state-set
    BECOME_MASTER = "BECOME_MASTER"
    REFUSE_MASTER = "REFUSE_MASTER"    # a learner named master: refuse (the controller must not do this)
    FOLLOW = "FOLLOW"                  # (re)start replicating from the named master
    NO_MASTER = "NO_MASTER"            # the set has no master now: a master of an older epoch steps down


def decide(role: Role, local_epoch: int, my_id: int, learner: bool, master_id: int | None, master_epoch: int,
           master_ha: str, following_ha: str) -> Change:
    """What the controller's view (master_id, master_epoch, master_ha) asks of this replica."""
    if master_epoch < local_epoch:
        return Change.IGNORE
    if master_id is None or master_id <= 0:
        return Change.NO_MASTER
    if master_id == my_id:
        if learner:
            return Change.REFUSE_MASTER
        if role is Role.MASTER and master_epoch == local_epoch:
            return Change.ADOPT_SSS
        return Change.BECOME_MASTER
    if role in (Role.FOLLOWER, Role.LEARNER) and master_epoch == local_epoch and master_ha == following_ha:
        return Change.KEEP
    return Change.FOLLOW


def _follow(learner: bool) -> Role:
    return Role.LEARNER if learner else Role.FOLLOWER


TRANSITIONS: dict[tuple[Role, Change], Role] = {}
for _r in (Role.NONE, Role.MASTER, Role.FOLLOWER, Role.LEARNER):
    TRANSITIONS[(_r, Change.IGNORE)] = _r
    TRANSITIONS[(_r, Change.KEEP)] = _r
    TRANSITIONS[(_r, Change.REFUSE_MASTER)] = _r
    TRANSITIONS[(_r, Change.NO_MASTER)] = Role.NONE if _r is Role.MASTER else _r
    if _r is not Role.LEARNER:
        TRANSITIONS[(_r, Change.BECOME_MASTER)] = Role.MASTER
TRANSITIONS[(Role.MASTER, Change.ADOPT_SSS)] = Role.MASTER


def next_role(role: Role, change: Change, learner: bool) -> Role:
    """The role after `change` (FOLLOW depends on whether this replica is a learner)."""
    if change is Change.FOLLOW:
        return _follow(learner)
    try:
        return TRANSITIONS[(role, change)]
    except KeyError:
        raise ValueError(f"no transition from {role} on {change}") from None


def master_epoch_start(last: EpochEntry | None, epoch: int, end: int) -> tuple[bool, int] | None:
    """Where a new master of `epoch` starts on a log ending at `end`: (append an entry?, start).
    None if our epoch file already holds a newer epoch (a stale order)."""
    if last is not None and last.epoch > epoch:
        return None
    if last is not None and last.epoch == epoch:
        return False, last.start_offset   # restarted as master of the same epoch: it goes on
    return True, end
