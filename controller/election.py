"""Election policy (pure): who should be master of a broker set, given the replicated state and
the leader's liveness table. No clocks: liveness is passed in as "these brokers are alive, with
these heartbeat values".

Policy (see controller/DESIGN-election.md):
- candidates are the live, registered, non-learner members of the sync-state-set; for a set
  that never had a master every live registered non-learner replica;
- rank: the broker the request names (manual switch / a broker asking), then the highest epoch,
  then the largest max offset, then the lowest election priority, then the lowest broker id
  (Python ints: no overflow; the id makes the order total, so no ties are merged);
- a broker whose newest session stream has closed is never a candidate (nor kept in the new
  set), although it still counts as alive for "is the master alive" until its lease runs out:
  when every broker of a set dies at once, electing one that is already gone wastes an epoch;
- with no candidate: any live registered non-learner replica only if unclean election is on;
  otherwise, if the set had a master, the outcome to commit is "no master" (`decide`);
- the new sync-state-set is the new master plus the old set's other live members (the old
  master only when it is alive, i.e. a manual switch, and not handing off: a master that hands
  off before it stops asks to be left out, so the new master never waits for it); an unclean
  winner starts alone.
Learners are never candidates, not even in a first or unclean election.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from orbitmq.controller.refusals import Refusal
from orbitmq.controller.state import BrokerSet, ElectMaster


@dataclass(frozen=True)
class Live:
    """One broker's last heartbeat as seen by the leader."""

    epoch: int = 0
    max_offset: int = 0
    confirm_offset: int = 0
    priority: int = 0


@dataclass(frozen=True)
class Decision:
    master_id: int                 # 0: no candidate (see `code`)
    sss: frozenset[int]
    unclean: bool
    code: str                      # "" on success; NO_CANDIDATE, MASTER_ALIVE, NOT_CANDIDATE
    reason: str


def rank_key(broker_id: int, live: Live, preferred: int) -> tuple[int, int, int, int, int]:
    """Sort key: smaller is better."""
    return (0 if broker_id == preferred else 1, -live.epoch, -live.max_offset, live.priority, broker_id)


def candidates(bs: BrokerSet, alive: Mapping[int, Live], unclean: bool = False,
               closed: Set[int] = frozenset()) -> list[int]:
    """Clean candidates, or (unclean) every live registered non-learner replica; never a broker
    in `closed` (its newest session stream closed: it is going or gone)."""
    pool = bs.replicas.keys() if (not bs.had_master or unclean) else bs.sss
    return sorted(b for b in pool if b in alive and b not in closed and bs.electable(b))


def elect(bs: BrokerSet, alive: Mapping[int, Live], preferred: int = 0, designate: bool = False,
          unclean_enabled: bool = False, closed: Set[int] = frozenset(), handoff: bool = False) -> Decision:
    """The election for `bs` given live brokers `alive` (the old master counts only if present)
    and `closed`, the live brokers whose newest session has closed (alive until their lease runs
    out, so a closed master is not replaced early, but never candidates)."""
    master_alive = bs.master_id is not None and bs.master_id in alive
    if designate:
        if preferred == bs.master_id and master_alive:
            return Decision(0, bs.sss, False, Refusal.ALREADY_MASTER, f"broker {preferred} is already master")
        if preferred in closed and preferred in candidates(bs, alive):
            return Decision(0, bs.sss, False, Refusal.NOT_CANDIDATE,
                            f"broker {preferred}'s controller session closed and it has not heartbeated since "
                            "(reconnecting or gone); retry once it heartbeats again")
        if preferred not in candidates(bs, alive, closed=closed):
            return Decision(0, bs.sss, False, Refusal.NOT_CANDIDATE,
                            f"broker {preferred} is not a live, registered, non-learner member of the sync-state-set")
    elif master_alive:
        return Decision(0, bs.sss, False, Refusal.MASTER_ALIVE, f"master {bs.master_id} is alive")
    unclean = False
    pool = candidates(bs, alive, closed=closed)
    if not pool and unclean_enabled:
        pool, unclean = candidates(bs, alive, unclean=True, closed=closed), True
    if not pool:
        why = "no live sync-state-set member" + ("" if unclean_enabled else " (unclean election is off)")
        return Decision(0, bs.sss, False, Refusal.NO_CANDIDATE, why)
    winner = min(pool, key=lambda b: rank_key(b, alive[b], preferred))
    if unclean:
        sss = frozenset({winner})
    else:
        sss = frozenset({winner} | {b for b in bs.sss if b in alive and b not in closed and bs.electable(b)
                                    and not (handoff and b == bs.master_id)})
    if designate and handoff:
        reason = f"master {bs.master_id} handed off to {winner}"
    elif designate:
        reason = f"manual switch to {winner}"
    elif not bs.had_master:
        reason = "first election"
    elif bs.master_id is None:
        reason = "set had no master"
    else:
        reason = f"master {bs.master_id} lost"
    if unclean:
        reason += " (unclean)"
    return Decision(winner, sss, unclean, "", reason)


def decide(bs: BrokerSet, alive: Mapping[int, Live], closed: Set[int], time_ms: int, old_master_heartbeat_ms: int,
           preferred: int = 0, designate: bool = False, unclean_enabled: bool = False, handoff: bool = False,
           ) -> tuple[ElectMaster | None, Decision]:
    """The command to commit for an election of `bs` (None: nothing to commit) and the decision.

    The no-candidate rule: when the set's master is gone and nobody may replace it, an automatic
    election (no broker named) commits "no master" once (master 0: epoch + 1, the SSS kept, a
    history entry with the reason), so the old master is fenced by epoch; the leader's scan then
    retries every `election_retry_s` until a member is back (RocketMQ #5009)."""
    d = elect(bs, alive, preferred=preferred, designate=designate, unclean_enabled=unclean_enabled, closed=closed,
              handoff=handoff and designate)
    if d.code == Refusal.NO_CANDIDATE and bs.master_id is not None and not designate and preferred == 0:
        return ElectMaster(bs.cluster, bs.name, bs.master_epoch, 0, frozenset(), False,
                           f"master {bs.master_id} lost; {d.reason}", time_ms, old_master_heartbeat_ms), d
    if d.code:
        return None, d
    return ElectMaster(bs.cluster, bs.name, bs.master_epoch, d.master_id, d.sss, d.unclean, d.reason, time_ms,
                       old_master_heartbeat_ms), d
