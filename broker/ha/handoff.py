"""A master's graceful handoff (pure): whom to hand mastership to, and when each step is done.

Owns: the choice of the successor (a non-learner member of the sync-state-set other than the
master, connected, preferring the one an operator named, then the one holding the most, then the
lowest id) and the step rules of the handoff the role manager runs (broker/ha/role_manager.py
`hand_off`): HOLD new sends -> DRAIN (every in-flight send answered) -> CATCH_UP (the successor
holds the master's whole log) -> ELECT (the controller makes it master in a new epoch, leaving
the old master out of the new sync-state-set) -> AWAIT_ROLE (this replica follows the new
master) -> DONE, then the held sends are answered NOT_MASTER with the new master's address and
the client retries there at once. No sockets, clocks or threads: offsets and times come in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Set
from dataclasses import dataclass


class Step(enum.Enum):
    DRAIN = "DRAIN"              # new sends held; waiting for in-flight sends to be answered
    CATCH_UP = "CATCH_UP"        # waiting for the successor to hold the whole log
    ELECT = "ELECT"              # asking the controller to elect the successor
    AWAIT_ROLE = "AWAIT_ROLE"    # elected; waiting to see this replica follow it
    DONE = "DONE"
    FAILED = "FAILED"            # nothing changed hands: this replica stays master, held sends go on


class HandoffRefused(Exception):
    """No handoff is possible now (the reason says why); nothing was changed."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def choose_successor(master_id: int, members: Set[int], acks: Mapping[int, int], learners: Set[int],
                     preferred: int = 0) -> int:
    """The replica to hand mastership to: a connected (it has acknowledged something) non-learner
    sync-state-set member other than the master; `preferred` if it qualifies (named by an
    operator: refused if it does not), else the one holding the most, then the lowest id."""
    pool = sorted(b for b in members if b != master_id and b not in learners and acks.get(b, -1) >= 0)
    if preferred:
        if preferred == master_id:
            raise HandoffRefused("ALREADY_MASTER", f"broker {preferred} is already the master")
        if preferred not in pool:
            raise HandoffRefused("NOT_CANDIDATE", f"broker {preferred} is not a connected, non-learner member of "
                                 f"the sync-state-set {sorted(members)}")
        return preferred
    if not pool:
        raise HandoffRefused("NO_CANDIDATE", f"no connected member of the sync-state-set {sorted(members)} to hand "
                             "mastership to")
    return min(pool, key=lambda b: (-acks.get(b, -1), b))


@dataclass
class Handoff:
    """One handoff in progress: its successor, its step and its deadline (monotonic seconds)."""

    successor: int
    deadline: float
    step: Step = Step.DRAIN

    def advance(self, now: float, waiters: int, successor_ack: int, log_end: int, elected: bool = False,
                following: bool = False) -> Step:
        """The step after looking at the world: in-flight `waiters`, what the successor holds, the
        master's `log_end`, whether the controller elected it and whether this replica follows it.
        Past the deadline before the election, the handoff fails (this replica stays master);
        after it, there is no way back (the controller moved the epoch) and it is DONE."""
        if self.step in (Step.DONE, Step.FAILED):
            return self.step
        if self.step is Step.DRAIN and waiters == 0:
            self.step = Step.CATCH_UP
        if self.step is Step.CATCH_UP and successor_ack >= log_end:
            self.step = Step.ELECT
        if self.step is Step.ELECT and elected:
            self.step = Step.AWAIT_ROLE
        if self.step is Step.AWAIT_ROLE and following:
            self.step = Step.DONE
        if now >= self.deadline and self.step in (Step.DRAIN, Step.CATCH_UP):
            self.step = Step.FAILED
        elif now >= self.deadline and self.step is Step.AWAIT_ROLE:
            self.step = Step.DONE
        return self.step
