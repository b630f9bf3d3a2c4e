"""The controller leader's periodic scan (pure): given now, leadership, term, the replicated state
and the liveness table, what to do.

Owns: whether this node may serve brokers as the leader now (`serving`), the leader-local bookkeeping that is never replicated (since when this node leads, in which
term; which sets have an election in flight; when each set last tried one; the last view pushed
per set) and the rules: on losing leadership step down (forget liveness, close sessions); on
gaining it start rebuilding liveness and announce; elect nobody until liveness has been rebuilt
for `liveness_rebuild_s` (RocketMQ #5712/#11045); push a set's view whenever its master, epochs
or addresses changed; replace a dead master (election.decide, which also holds the no-candidate
rule) at most once per `election_retry_s` per set, one election per set at a time (#5009).

Never: sockets, threads, clocks or Raft. The shell (controller/server.py, or the simulator in
tests/sim/) calls `step` on a timer and carries out the returned actions, then reports an
election's end with `election_done`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orbitmq.controller import election as el
from orbitmq.controller.liveness import Liveness
from orbitmq.controller.state import BrokerSet, ControllerState, ElectMaster, SetKey


@dataclass(frozen=True)
class ScanSettings:
    liveness_rebuild_s: float
    election_retry_s: float
    unclean_election: bool = False
    leader_fallback_s: float = float("inf")   # Raft's leader fallback: raft_max_timeout_s


# ---- actions -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepDown:
    """This node stopped leading: liveness was forgotten; close every broker session."""


@dataclass(frozen=True)
class BecameLeader:
    """This node leads `term` from now on: liveness was cleared and is being rebuilt."""

    term: int


@dataclass(frozen=True)
class Announce:
    """Commit AnnounceNode (the leader's address) before serving."""


@dataclass(frozen=True)
class WaitLiveness:
    """Nothing may be elected before `until` (monotonic): liveness is still being rebuilt."""

    until: float


@dataclass(frozen=True)
class Push:
    """Push the current view of `key` to its brokers' sessions (it changed since the last push)."""

    key: SetKey
    reason: str


@dataclass(frozen=True)
class Elect:
    """Commit `command` through Raft, then call `election_done(key)`."""

    key: SetKey
    command: ElectMaster
    decision: el.Decision


Action = StepDown | BecameLeader | Announce | WaitLiveness | Push | Elect

PushSignature = tuple[int, int, int, str, str, bool]


def push_signature(bs: BrokerSet | None) -> PushSignature:
    """What a broker's role depends on: a change of any of it must reach the set's sessions."""
    if bs is None:
        return (0, 0, 0, "", "", False)
    m = bs.replicas.get(bs.master_id) if bs.master_id is not None else None
    return (bs.master_id or 0, bs.master_epoch, bs.sss_epoch, m.address if m else "", m.ha_address if m else "",
            True)


@dataclass
class LeaderScan:
    """The scan's leader-local state and its step function."""

    settings: ScanSettings
    leader_since: float | None = None
    term: int = -1
    announced: bool = False
    announcing: bool = False
    electing: set[SetKey] = field(default_factory=set)
    last_try: dict[SetKey, float] = field(default_factory=dict)
    pushed: dict[SetKey, PushSignature] = field(default_factory=dict)

    def serving(self, is_leader: bool, majority_contact_age_s: float) -> bool:
        """May this node answer brokers as the leader (renewing their leases) now? Only while Raft
        says it leads, its address is committed, and it heard from a majority within the leader
        fallback time. The last part is checked on demand: a leader resumed from a pause (SIGSTOP)
        still says it leads until its Raft tick runs, while a newer leader may already have
        elected a new master; answering then would renew a deposed master's lease (found by the
        simulator, seed 10676)."""
        return is_leader and self.announced and majority_contact_age_s < self.settings.leader_fallback_s

    def liveness_ready(self, now: float) -> bool:
        return self.leader_since is not None and now - self.leader_since >= self.settings.liveness_rebuild_s

    def step(self, now: float, now_ms: int, is_leader: bool, term: int, state: ControllerState,
             live: Liveness) -> list[Action]:
        """One scan. Mutates only this object and `live` (cleared on a leadership change)."""
        if not is_leader or (self.leader_since is not None and term != self.term):
            if self.leader_since is None:
                return []
            self.leader_since = None
            self.announced = self.announcing = False
            self.electing.clear()
            self.last_try.clear()
            self.pushed.clear()
            live.clear()
            return [StepDown()]
        out: list[Action] = []
        if self.leader_since is None:
            self.leader_since, self.term = now, term
            live.clear()
            out.append(BecameLeader(term))
        if not self.announced and not self.announcing:
            self.announcing = True
            out.append(Announce())
        if not self.announced or not self.liveness_ready(now):
            out.append(WaitLiveness(self.leader_since + self.settings.liveness_rebuild_s))
            return out
        for key in sorted(state.sets):
            bs = state.sets[key]
            push = self.push_if_changed(key, bs, "scan")
            if push is not None:
                out.append(push)
            if key in self.electing or now - self.last_try.get(key, -1e18) < self.settings.election_retry_s:
                continue
            if bs.master_id is not None and live.alive((key, bs.master_id), now):
                continue
            self.last_try[key] = now
            cmd, d = self.decide(key, bs, now, now_ms, live)
            if cmd is not None:
                self.electing.add(key)
                out.append(Elect(key, cmd, d))
        return out

    def decide(self, key: SetKey, bs: BrokerSet, now: float, now_ms: int, live: Liveness, preferred: int = 0,
               designate: bool = False, handoff: bool = False) -> tuple[ElectMaster | None, el.Decision]:
        """The election command for `bs` now (also used by the ElectMaster RPC)."""
        alive, closed = live.election_view(key, bs.replicas, now)
        old = live.get((key, bs.master_id)) if bs.master_id is not None else None
        return el.decide(bs, alive, closed, now_ms, old.last_seen_ms if old else 0, preferred=preferred,
                         designate=designate, unclean_enabled=self.settings.unclean_election, handoff=handoff)

    def push_if_changed(self, key: SetKey, bs: BrokerSet | None, reason: str) -> Push | None:
        sig = push_signature(bs)
        if self.pushed.get(key) == sig:
            return None
        self.pushed[key] = sig
        return Push(key, reason)

    def announce_done(self, ok: bool) -> None:
        self.announcing = False
        self.announced = ok

    def election_done(self, key: SetKey) -> None:
        self.electing.discard(key)
