"""Simulated controllers: the real replicated state machine, liveness table and leader scan on a
model of Raft's guarantees (not Raft itself: pysyncobj uses real sockets, disk and the global PRNG).

The Raft model keeps one log of committed commands. A leader exists only while it reaches a
majority; after it is lost a new one is chosen among nodes that reach a majority once an election
timeout (0.5-1 s) has passed, with a higher term. A deposed leader keeps believing it leads (and
keeps answering brokers, renewing their leases) until it has missed its majority for
`raft_max_timeout_s` or hears from the new leader, exactly the window the liveness rebuild covers.
A command commits only on the current leader while it reaches a majority, else it fails after
`commit_timeout_s`. Every node applies the committed log in order (a restarted node replays it,
as pysyncobj replays its journal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orbitmq.controller import election as el
from orbitmq.controller import leader_scan as ls
from orbitmq.controller import state as st
from orbitmq.controller.liveness import Liveness

if TYPE_CHECKING:
    from sim_net import Net, Sim


@dataclass(frozen=True)
class CtlTiming:
    heartbeat_timeout_s: float = 2.5
    broker_lease_s: float = 2.0
    scan_interval_s: float = 0.1
    election_retry_s: float = 0.5
    commit_timeout_s: float = 5.0
    raft_min_timeout_s: float = 0.5
    raft_max_timeout_s: float = 1.0

    @property
    def liveness_rebuild_s(self) -> float:
        return max(self.heartbeat_timeout_s, self.raft_max_timeout_s + self.broker_lease_s)


@dataclass(frozen=True)
class View:
    """What a heartbeat answer / a push tells a broker about its set."""

    master_id: int
    master_epoch: int
    sss: frozenset[int]
    sss_epoch: int
    replica_count: int


class Raft:
    def __init__(self, sim: Sim, net: Net, nodes: list[str], timing: CtlTiming) -> None:
        self.sim, self.net, self.nodes, self.t = sim, net, nodes, timing
        self.log: list[st.Command] = []
        self.truth = st.ControllerState()          # the committed state (every node converges to it)
        self.leader: str | None = None
        self.term = 0
        self.believes: dict[str, int | None] = {n: None for n in nodes}
        self.lost_majority_at: dict[str, float | None] = {n: None for n in nodes}
        self.contact: dict[str, float] = {n: float("-inf") for n in nodes}   # last heard from a majority
        self.leaderless_since: float | None = 0.0
        self.timeout = timing.raft_min_timeout_s
        self.controllers: dict[str, SimController] = {}
        self.elections = 0
        self.on_commit: Callable[[st.Command, st.Result], None] | None = None

    def majority(self, n: str) -> bool:
        if not self.net.up.get(n, False):
            return False
        if self.net.paused_for(n):
            return False
        reach = sum(1 for m in self.nodes if m == n or (self.net.responsive(n, m) and self.net.responsive(m, n)))
        return reach * 2 > len(self.nodes)

    def in_contact_with_leader(self, n: str) -> bool:
        ld = self.leader
        return ld is not None and (n == ld or (self.net.responsive(ld, n) and self.net.responsive(n, ld)))

    def tick(self) -> None:
        now = self.sim.now
        for n in self.nodes:
            if self.believes[n] is None or self.net.paused_for(n):
                continue     # a stopped process keeps believing whatever it believed
            if not self.net.up.get(n, False):
                self.believes[n] = None
                continue
            if n != self.leader and self.in_contact_with_leader(n):
                self.believes[n] = None          # it hears the higher term
                continue
            if self.majority(n):
                self.lost_majority_at[n] = None
                self.contact[n] = now
            elif self.lost_majority_at[n] is None:
                self.lost_majority_at[n] = now
            elif now - self.lost_majority_at[n] >= self.t.raft_max_timeout_s:
                self.believes[n] = None          # steps down after missing its majority
        ld = self.leader
        if ld is not None and self.believes[ld] == self.term and self.majority(ld):
            self.leaderless_since = None
            return
        if self.leaderless_since is None:
            self.leaderless_since = now
            self.timeout = self.sim.rng.uniform(self.t.raft_min_timeout_s, self.t.raft_max_timeout_s)
            return
        if now - self.leaderless_since < self.timeout:
            return
        cands = [n for n in self.nodes if self.majority(n)]
        if not cands:
            return
        new = self.sim.rng.choice(cands)
        self.term += 1
        self.leader = new
        self.believes[new] = self.term
        self.lost_majority_at[new] = None
        self.contact[new] = now
        self.leaderless_since = None
        self.elections += 1
        self.controllers[new].catch_up()

    def submit(self, node: str, cmd: st.Command, cb: Callable[[st.Result | None], None]) -> None:
        term = self.believes.get(node)
        if node == self.leader and term == self.term and self.majority(node):
            self.sim.at(0.002 + self.sim.rng.random() * 0.01, self._commit, node, term, cmd, cb)
        else:
            self.sim.at(self.t.commit_timeout_s, cb, None)

    def _commit(self, node: str, term: int, cmd: st.Command, cb: Callable[[st.Result | None], None]) -> None:
        if self.leader != node or self.term != term or not self.majority(node):
            self.sim.at(self.t.commit_timeout_s, cb, None)
            return
        self.log.append(cmd)
        r = self.truth.apply(cmd)
        if self.on_commit is not None:
            self.on_commit(cmd, r)
        mine = self.controllers[node].catch_up()
        cb(mine if mine is not None else r)


class SimController:
    """One controller node: its copy of the state, its liveness table and its leader scan."""

    def __init__(self, name: str, sim: Sim, net: Net, raft: Raft, timing: CtlTiming) -> None:
        self.name, self.sim, self.net, self.raft, self.t = name, sim, net, raft, timing
        self.brokers: dict[str, Any] = {}            # broker node name -> SimBroker (to call back)
        self.restart()

    def restart(self) -> None:
        """A new process: the journal is replayed, everything else starts empty."""
        self.state = st.ControllerState()
        self.applied = 0
        self.live = Liveness(self.t.heartbeat_timeout_s, self.t.broker_lease_s)
        self.scan = ls.LeaderScan(ls.ScanSettings(self.t.liveness_rebuild_s, self.t.election_retry_s,
                                                  leader_fallback_s=self.t.raft_max_timeout_s))
        self.sessions: dict[tuple[st.SetKey, int], tuple[str, int]] = {}   # -> (broker node, session gen)

    def catch_up(self) -> st.Result | None:
        last = None
        if self.net.up.get(self.name, False) and self.raft.in_contact_with_leader(self.name):
            while self.applied < len(self.raft.log):
                last = self.state.apply(self.raft.log[self.applied])
                self.applied += 1
        return last

    def serving(self) -> bool:
        return self.scan.serving(self.raft.believes.get(self.name) is not None,
                                 self.sim.now - self.raft.contact[self.name])

    def tick(self) -> None:
        if not self.net.up.get(self.name, False):
            return
        wait = self.net.paused_for(self.name)
        if wait:
            self.sim.at(wait, self.tick)
            return
        self.sim.at(self.t.scan_interval_s, self.tick)
        self.catch_up()
        term = self.raft.believes.get(self.name)
        acts = self.scan.step(self.sim.now, int(self.sim.now * 1000), term is not None, term or 0, self.state,
                              self.live)
        for a in acts:
            if isinstance(a, ls.StepDown):
                self.sessions.clear()
            elif isinstance(a, ls.Announce):
                self.raft.submit(self.name, st.AnnounceNode(self.name, self.name),
                                 lambda r: self.scan.announce_done(r is not None and r.ok and
                                                                   self.raft.believes.get(self.name) is not None))
            elif isinstance(a, ls.Push):
                self.push(a.key)
            elif isinstance(a, ls.Elect):
                self.raft.submit(self.name, a.command, lambda r, k=a.key: self._elected(k, r))

    def _elected(self, key: st.SetKey, r: st.Result | None) -> None:
        self.scan.election_done(key)
        if r is not None and r.ok:
            self.push(key)

    def view(self, key: st.SetKey) -> View:
        bs = self.state.sets.get(key)
        if bs is None:
            return View(0, 0, frozenset(), 0, 0)
        return View(bs.master_id or 0, bs.master_epoch, bs.sss, bs.sss_epoch,
                    sum(1 for r in bs.replicas.values() if not r.learner))

    def push(self, key: st.SetKey) -> None:
        v = self.view(key)   # brokers ignore views they have seen
        for (k, _b), (node, gen) in sorted(self.sessions.items()):
            if k == key:
                self.net.send(self.name, node, self.brokers[node].on_push, self.name, gen, v)

    # ---- requests from brokers ----------------------------------------------------------------------

    def on_heartbeat(self, node: str, key: st.SetKey, broker_id: int, gen: int, seq: int, live: el.Live) -> None:
        b = self.brokers[node]
        if not self.serving():
            self.net.send(self.name, node, b.on_heartbeat_reply, self.name, seq, None)
            return
        self.live.record((key, broker_id), live, self.sim.now, int(self.sim.now * 1000), gen)
        self.sessions[(key, broker_id)] = (node, gen)
        self.net.send(self.name, node, b.on_heartbeat_reply, self.name, seq, self.view(key))

    def on_session_closed(self, key: st.SetKey, broker_id: int, gen: int) -> None:
        if self.sessions.get((key, broker_id), (None, -1))[1] == gen:
            del self.sessions[(key, broker_id)]
        self.live.session_closed((key, broker_id), gen)

    def on_alter(self, node: str, req: int, key: st.SetKey, master_id: int, master_epoch: int,
                 members: frozenset[int], sss_epoch: int) -> None:
        b = self.brokers[node]

        def reply(ok: bool, m: frozenset[int] | None, e: int | None) -> None:
            self.net.send(self.name, node, b.on_alter_reply, req, ok, m, e)

        if not self.serving():
            reply(False, None, None)
            return
        bs = self.state.sets.get(key)
        if bs is not None:
            dead = [x for x in sorted(members - bs.sss) if not self.live.alive((key, x), self.sim.now)]
            if dead:
                reply(False, bs.sss, bs.sss_epoch)
                return

        def done(r: st.Result | None) -> None:
            if r is None:
                reply(False, None, None)
            else:
                reply(r.ok, frozenset(r.sss), r.sss_epoch)

        self.raft.submit(self.name, st.AlterSyncStateSet(key[0], key[1], master_id, master_epoch, members,
                                                         sss_epoch), done)
