"""A seeded, single-threaded simulation of a whole OrbitMQ deployment on the pure cores, with the
invariants checked after every event.

`run(seed, faults, params)` builds 3 controllers (sim_controller.py) and one or more broker sets
of 3 replicas (plus a learner when drawn), each replica a `SimBroker` (sim_broker.py), and a
producer per set; runs a safety phase in which the explicit fault schedule (`faults`, a list of
`Fault`: crashes and restarts, process pauses (SIGSTOP: its timers and input wait, in order),
partitions, one-way cuts, stream resets and corrupted bytes) is
applied on top of the per-seed message drop / duplication rates; then a liveness phase (every
node up, every link healed, no more faults) that must converge. Same seed and schedule, same
run: the returned digest is a hash of the whole timeline.

Invariants (a violation raises `Violation` with the seed, the time and what broke):
- at most one master per epoch (the controllers' history, and no two replicas acting as master of
  one epoch), master epochs only grow, a learner is never elected nor acts as master;
- no acknowledged message is ever lost: every acknowledged message lies below the acking master's
  confirm offset and is at its offset on every later master of the set;
- the confirm offset of a replica never moves backwards within a process lifetime and never passes
  what a reporting member of the master's acknowledgement set holds;
- a fenced master acknowledges nothing: at every acknowledgement the master's lease holds and it
  is the master of the newest committed epoch;
- committed data is the same everywhere: what any replica exposes below its confirm offset equals
  what every other replica exposed there (no replica, restarted or not, serves a divergent tail),
  and no replica ever truncates below its own confirm offset.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from sim_broker import REC, SimBroker, records
from sim_controller import CtlTiming, Raft, SimController
from sim_net import Net, NetParams, Sim

from orbitmq.broker.ha.roles import Role
from orbitmq.controller import state as st


def _nothing() -> None:
    pass


class Violation(AssertionError):
    """An invariant broke."""


FAULT_KINDS = ("crash_broker", "crash_ctl", "isolate", "one_way", "split", "reset_ha", "corrupt_ha", "pause",
               "crash_master", "isolate_master", "pause_master", "isolate_leader", "pause_leader",
               "crash_after_truncate", "cut_replication")


@dataclass(frozen=True)
class Fault:
    at: float          # seconds into the safety phase
    kind: str          # one of FAULT_KINDS
    target: int        # which node (modulo the candidates for that kind)
    duration: float    # how long until the restart / heal


@dataclass(frozen=True)
class Params:
    sets: int = 1
    learner: bool = False
    drop: float = 0.0
    dup: float = 0.0
    frame_records: int = 4
    send_interval: float = 0.05
    safety_s: float = 10.0
    liveness_s: float = 25.0

    @staticmethod
    def swarm(rng: random.Random) -> Params:
        """Per-seed fault rates and shape (swarm testing)."""
        return Params(sets=1 + (rng.random() < 0.25), learner=rng.random() < 0.4,
                      drop=rng.choice([0.0, 0.0, 0.02, 0.1, 0.25]), dup=rng.choice([0.0, 0.05, 0.2]),
                      frame_records=rng.choice([1, 2, 4, 16]), send_interval=rng.choice([0.05, 0.1, 0.2]))


@dataclass
class Outcome:
    seed: int
    digest: str
    events: int
    faults: int
    acked: int
    sent: int
    elections: int
    raft_elections: int
    stats: dict = field(default_factory=dict)


def faults_from_seed(rng: random.Random, safety_s: float, n: int | None = None) -> list[Fault]:
    n = rng.randint(1, 10) if n is None else n
    out = []
    for _ in range(n):
        out.append(Fault(round(rng.uniform(0.5, safety_s - 0.5), 3), rng.choice(FAULT_KINDS), rng.randrange(64),
                         round(rng.choice([0.3, 1.0, 2.5, 4.0, 7.0]) * rng.uniform(0.5, 1.5), 3)))
    return sorted(out, key=lambda f: f.at)


class World:
    def __init__(self, seed: int, params: Params) -> None:
        self.seed = seed
        self.p = params
        self.rng = random.Random(f"orbitmq-sim:{seed}")
        self.sim = Sim(self.rng)
        self.net = Net(self.sim, NetParams(drop=params.drop, dup=params.dup))
        self.timing = CtlTiming()
        self.ctl_names = ["c1", "c2", "c3"]
        self.raft = Raft(self.sim, self.net, self.ctl_names, self.timing)
        self.raft.on_commit = self._on_commit
        self.ctls: dict[str, SimController] = {}
        for n in self.ctl_names:
            self.ctls[n] = self.raft.controllers[n] = SimController(n, self.sim, self.net, self.raft, self.timing)
        self._gen = 0
        self.stats = {"truncations": 0, "frames": 0, "ha_errors": 0, "faults": 0, "refused": 0, "timeouts": 0}
        self.brokers: dict[str, SimBroker] = {}
        self.sets: list[str] = [chr(ord("a") + i) for i in range(params.sets)]
        for s in self.sets:
            for b in (1, 2, 3, 4) if params.learner else (1, 2, 3):
                br = SimBroker(self, s, b, learner=(b == 4), frame_records=params.frame_records)
                self.brokers[br.name] = br
        for c in self.ctls.values():
            c.brokers = self.brokers
        # invariant bookkeeping
        self.canonical: dict[str, bytearray] = {s: bytearray() for s in self.sets}
        self.verified: dict[str, int] = {b: 0 for b in self.brokers}
        self.confirm_seen: dict[str, tuple[int, int, int]] = {}  # broker -> (life, confirm, truncations)
        self.acked: dict[int, tuple[str, int]] = {}                # message -> (set, offset)
        self.acked_end: dict[str, int] = {s: 0 for s in self.sets}
        self.master_checked: dict[str, tuple[str, int, int]] = {}  # set -> (broker, epoch, verified end)
        self.max_epoch: dict[str, int] = {s: 0 for s in self.sets}
        self.timeline = hashlib.sha256()
        self.sent = 0
        self.next_msg = 1
        self.inflight: dict[str, int] = {s: 0 for s in self.sets}
        self.believed_master: dict[str, str] = {s: f"{s}-1" for s in self.sets}
        self.faulting = True
        self.crash_after_truncate_until = -1.0

    def next_gen(self) -> int:
        self._gen += 1
        return self._gen

    def fail(self, what: str) -> None:
        raise Violation(f"seed {self.seed} t={self.sim.now:.4f}: {what}")

    # ---- setup ---------------------------------------------------------------------------------------

    def start(self) -> None:
        for br in self.brokers.values():     # registered before the run (ids applied, addresses known)
            for cmd in (st.ApplyBrokerId("sim", br.set_name, br.id, f"k{br.id}"),
                        st.RegisterBroker("sim", br.set_name, br.id, br.name, br.name, br.learner, f"k{br.id}")):
                self.raft.log.append(cmd)
                assert self.raft.truth.apply(cmd).ok
        for n in self.ctl_names:
            self.net.up[n] = True
            self.sim.at(self.rng.random() * 0.1, self.ctls[n].tick)
        for br in self.brokers.values():
            br.boot()
        self.net.up["client"] = True
        self.sim.at(0.1, self._raft_tick)
        for s in self.sets:
            self.sim.at(0.5, self._produce, s)

    def _raft_tick(self) -> None:
        self.raft.tick()
        self.sim.at(0.1, self._raft_tick)

    # ---- the producer --------------------------------------------------------------------------------

    def _produce(self, s: str) -> None:
        self.sim.at(self.p.send_interval, self._produce, s)
        if self.inflight[s] >= 4:
            return
        mid = self.next_msg
        self.next_msg += 1
        self.sent += 1
        self.inflight[s] += 1
        target = self.brokers[self.believed_master[s]]
        done = {"v": False}

        def reply(msg_id: int, code: str, detail: str) -> None:
            self.net.send(target.name, "client", self._on_reply, s, msg_id, code, detail, done)

        def timeout() -> None:
            if not done["v"]:
                done["v"] = True
                self.inflight[s] -= 1
                self.stats["timeouts"] += 1
                self.believed_master[s] = self.rng.choice(sorted(b for b in self.brokers if b.startswith(s + "-")))
        self.net.send("client", target.name, target.on_send, mid, reply)
        self.sim.at(4.0, timeout)

    def _on_reply(self, s: str, msg_id: int, code: str, detail: str, done: dict) -> None:
        if done["v"]:
            return
        done["v"] = True
        self.inflight[s] -= 1
        if code == "OK":
            return   # recorded at the acknowledgement itself (check_ack)
        self.stats["refused"] += 1
        self.stats[f"refused_{code}"] = self.stats.get(f"refused_{code}", 0) + 1
        if code == "NOT_MASTER" and detail:
            self.believed_master[s] = detail
        elif code != "REPLICATION_TIMEOUT":
            self.believed_master[s] = self.rng.choice(sorted(b for b in self.brokers if b.startswith(s + "-")))

    # ---- faults --------------------------------------------------------------------------------------

    def apply_fault(self, f: Fault) -> None:
        if not self.faulting:
            return
        self.stats["faults"] += 1
        self.timeline.update(repr(f).encode())
        if f.kind == "crash_after_truncate":
            self.crash_after_truncate_until = self.sim.now + f.duration
            return
        brokers = sorted(self.brokers)
        nodes = self.ctl_names + brokers
        if f.kind == "cut_replication":
            # the master of a set loses its links to the set's other replicas (only those): it keeps
            # taking sends that nobody can copy, a divergent tail if it dies now
            bs = self.raft.truth.get("sim", self.sets[f.target % len(self.sets)])
            if bs is None or not bs.master_id:
                return
            m = f"{bs.name}-{bs.master_id}"
            peers = [b for b in brokers if b.startswith(bs.name + "-") and b != m]
            self._cut({(m, p) for p in peers} | {(p, m) for p in peers}, f.duration)
            return
        if f.kind.endswith("_master") or f.kind.endswith("_leader"):
            # targeted: the current master of a set (as committed) or the controller leader
            if f.kind.endswith("_leader"):
                who = self.raft.leader
            else:
                bs = self.raft.truth.get("sim", self.sets[f.target % len(self.sets)])
                who = f"{bs.name}-{bs.master_id}" if bs is not None and bs.master_id else None
            if who is None:
                return
            f = Fault(f.at, f.kind.split("_")[0], (nodes if f.kind != "crash_master" else brokers).index(who),
                      f.duration)
            if f.kind == "crash":
                f = Fault(f.at, "crash_broker", f.target, f.duration)
        if f.kind == "crash_after_truncate":
            # any replica that cuts its log within `duration` crashes right after the cut, before
            # it trims its epoch list (the order the follower's state machine prescribes)
            self.crash_after_truncate_until = self.sim.now + f.duration
            return
        if f.kind == "crash_broker":
            b = self.brokers[brokers[f.target % len(brokers)]]
            if b.up:
                b.crash()
                self.sim.at(f.duration, self._restart_broker, b.name)
        elif f.kind == "crash_ctl":
            n = self.ctl_names[f.target % 3]
            if self.net.up.get(n):
                self.net.node_down(n)
                self.sim.at(f.duration, self._restart_ctl, n)
        elif f.kind in ("isolate", "one_way"):
            n = nodes[f.target % len(nodes)]
            others = [m for m in nodes + ["client"] if m != n]
            cuts = {(n, m) for m in others}
            if f.kind == "isolate":
                cuts |= {(m, n) for m in others}
            self._cut(cuts, f.duration)
        elif f.kind == "split":
            r = random.Random(f"{self.seed}:{f.target}")
            side = {n for n in nodes if r.random() < 0.5}
            cuts = {(a, b) for a in side for b in nodes if b not in side}
            cuts |= {(b, a) for a, b in cuts}
            self._cut(cuts, f.duration)
        elif f.kind == "pause":
            n = nodes[f.target % len(nodes)]
            if self.net.up.get(n) and not self.net.paused_for(n):
                self.net.paused[n] = self.sim.now + f.duration
        elif f.kind in ("reset_ha", "corrupt_ha"):
            streams = [s for s in self.net.streams if not s.closed]
            if streams:
                s = streams[f.target % len(streams)]
                if f.kind == "reset_ha":
                    s.reset(from_node=s.a)
                else:
                    s.corrupt_next = True

    def _cut(self, cuts: set[tuple[str, str]], duration: float) -> None:
        new = cuts - self.net.cut
        self.net.cut |= new
        self.sim.at(duration, self._heal, new)

    def _heal(self, cuts: set[tuple[str, str]]) -> None:
        self.net.cut -= cuts

    def _restart_broker(self, name: str) -> None:
        b = self.brokers[name]
        if not b.up:
            b.boot()

    def _restart_ctl(self, n: str) -> None:
        if not self.net.up.get(n):
            self.net.up[n] = True
            self.ctls[n].restart()
            self.ctls[n].tick()

    def heal_all(self) -> None:
        self.faulting = False
        self.net.cut.clear()
        self.net.paused.clear()
        self.net.p = NetParams()
        for n in self.ctl_names:
            self._restart_ctl(n)
        for b in sorted(self.brokers):
            self._restart_broker(b)

    # ---- invariants ----------------------------------------------------------------------------------

    def _on_commit(self, cmd: st.Command, r: st.Result) -> None:
        self.timeline.update(repr((round(self.sim.now, 6), cmd, r.ok)).encode())
        if isinstance(cmd, st.ElectMaster) and r.ok:
            bs = self.raft.truth.get("sim", cmd.broker_set)
            if bs.master_epoch <= self.max_epoch[cmd.broker_set]:
                self.fail(f"master epoch of {cmd.broker_set} did not grow: {bs.master_epoch}")
            self.max_epoch[cmd.broker_set] = bs.master_epoch
            if cmd.master_id and bs.replicas[cmd.master_id].learner:
                self.fail(f"learner {cmd.master_id} of {cmd.broker_set} elected")
            self.stats["elections"] = self.stats.get("elections", 0) + 1

    def on_became_master(self, b: SimBroker) -> None:
        if b.learner:
            self.fail(f"learner {b.name} acts as master")
        for o in self.brokers.values():
            if o is not b and o.up and o.set_name == b.set_name and o.role is Role.MASTER and o.epoch == b.epoch:
                self.fail(f"{o.name} and {b.name} both act as master of {b.set_name} epoch {b.epoch}")
        self._check_master_holds_acked(b.set_name)
        self.timeline.update(repr((round(self.sim.now, 6), "master", b.name, b.epoch)).encode())

    def check_ack(self, b: SimBroker, msg_id: int, off: int, end: int) -> None:
        bs = self.raft.truth.get("sim", b.set_name)
        if not b.lease.valid(self.sim.now):
            self.fail(f"{b.name} acknowledged message {msg_id} without a valid lease")
        if bs.master_epoch != b.epoch or bs.master_id != b.id:
            self.fail(f"{b.name} (epoch {b.epoch}) acknowledged message {msg_id} while the committed master of "
                      f"{b.set_name} is {bs.master_id} at epoch {bs.master_epoch}")
        if b.confirm < end:
            self.fail(f"{b.name} acknowledged message {msg_id} ending at {end} above its confirm offset {b.confirm}")
        self._verify_confirmed(b)
        got = records(self.canonical[b.set_name][off:end])
        if got[:1] != [(msg_id, b.epoch)]:
            self.fail(f"acknowledged message {msg_id} is not at {off} in the committed data")
        self.acked[msg_id] = (b.set_name, off)
        self.acked_end[b.set_name] = max(self.acked_end[b.set_name], end)
        self.timeline.update(repr((round(self.sim.now, 6), "ack", b.name, msg_id, off)).encode())

    def check_truncate(self, b: SimBroker, offset: int) -> None:
        if offset < b.confirm:
            self.fail(f"{b.name} truncates to {offset}, below its confirm offset {b.confirm} (it served that tail)")

    def truncated(self, b: SimBroker, offset: int) -> None:
        self.verified[b.name] = min(self.verified[b.name], offset)
        if self.faulting and self.sim.now <= self.crash_after_truncate_until:
            self.stats["crashed_mid_truncation"] = self.stats.get("crashed_mid_truncation", 0) + 1
            self.sim.at(0.0, self._crash_now, b.name)

    def _crash_now(self, name: str) -> None:
        b = self.brokers[name]
        if b.up:
            b.crash()
            self.sim.at(0.5 + self.rng.random(), self._restart_broker, name)

    def _verify_confirmed(self, b: SimBroker) -> None:
        """What `b` exposes below its confirm offset equals what everyone exposed there."""
        v = self.verified[b.name]
        c = min(b.confirm, len(b.log))
        if c <= v:
            return
        canon = self.canonical[b.set_name]
        known = min(c, len(canon))
        if known > v and b.log[v:known] != canon[v:known]:
            self.fail(f"{b.name} exposes data in [{v}, {known}) that differs from what was confirmed there")
        if c > len(canon):
            canon += b.log[len(canon):c]
        self.verified[b.name] = c

    def on_confirm(self, b: SimBroker) -> None:
        """A replica raised its confirm offset: the per-replica invariants, at the change itself."""
        self._check_broker(b)
        if b.role is Role.MASTER:
            self._check_master_holds_acked(b.set_name)

    def _check_broker(self, b: SimBroker) -> None:
        name = b.name
        seen = self.confirm_seen.get(name)
        if seen is not None and seen[0] == b.life and b.confirm < seen[1] and b.truncations == seen[2]:
            self.fail(f"{name}: confirm offset went back from {seen[1]} to {b.confirm}")
        self.confirm_seen[name] = (b.life, b.confirm, b.truncations)
        if b.confirm > len(b.log):
            self.fail(f"{name}: confirm offset {b.confirm} beyond its log end {len(b.log)}")
        self._verify_confirmed(b)
        if b.role is Role.MASTER and b.sss is not None:
            mx = len(b.log)
            for m in b.sss.ack_set():
                h = b.sss.holding(m, mx)
                if 0 <= h < b.confirm:
                    self.fail(f"{name}: confirm offset {b.confirm} passes member {m}'s ack {h}")

    def check(self) -> None:
        """Every invariant over the whole deployment (run after every event with `full_check`, else
        every `sweep_s`; the per-replica ones also run at each change: on_confirm, check_ack,
        check_truncate, on_became_master, _on_commit)."""
        masters: dict[tuple[str, int], str] = {}
        for name, b in self.brokers.items():
            if not b.up:
                continue
            self._check_broker(b)
            if b.role is Role.MASTER and b.sss is not None:
                k = (b.set_name, b.epoch)
                if k in masters:
                    self.fail(f"{masters[k]} and {name} both act as master of {b.set_name} epoch {b.epoch}")
                masters[k] = name
        for s in self.sets:
            self._check_master_holds_acked(s)

    def _check_master_holds_acked(self, s: str) -> None:
        bs = self.raft.truth.get("sim", s)
        if bs is None or bs.master_id is None:
            return
        b = self.brokers[f"{s}-{bs.master_id}"]
        if not b.up or b.role is not Role.MASTER or b.epoch != bs.master_epoch:
            return
        end = self.acked_end[s]
        prev = self.master_checked.get(s)
        start = prev[2] if prev is not None and prev[:2] == (b.name, b.epoch) else 0
        if end <= start:
            return
        canon = self.canonical[s]
        if len(b.log) < end or b.log[start:end] != canon[start:end]:
            lost = [m for m, (ss, off) in self.acked.items() if ss == s and start <= off < end and
                    (len(b.log) < off + REC or records(b.log[off:off + REC])[0][0] != m)]
            self.fail(f"master {b.name} of epoch {b.epoch} lacks acknowledged messages {lost[:5]} "
                      f"(log end {len(b.log)}, acknowledged up to {end})")
        self.master_checked[s] = (b.name, b.epoch, end)

    # ---- the run -------------------------------------------------------------------------------------

    def sweep(self) -> None:
        self.check()
        self.sim.at(0.25, self.sweep)

    def converged(self) -> bool:
        for s in self.sets:
            bs = self.raft.truth.get("sim", s)
            if bs is None or bs.master_id is None:
                return False
            b = self.brokers[f"{s}-{bs.master_id}"]
            if b.role is not Role.MASTER or b.epoch != bs.master_epoch or b.confirm < self.acked_end[s]:
                return False
            if self.master_checked.get(s, ("", 0, -1))[:2] != (b.name, b.epoch) and self.acked_end[s] > 0:
                return False
        return True


def run(seed: int, faults: list[Fault] | None = None, params: Params | None = None,
        full_check: bool = False) -> Outcome:
    """One simulated run; raises Violation on a broken invariant (or a liveness failure).
    `full_check`: sweep every invariant after every event (slower), else every 0.25 s simulated."""
    rng = random.Random(f"orbitmq-sim-params:{seed}")
    params = params or Params.swarm(rng)
    faults = faults_from_seed(rng, params.safety_s) if faults is None else faults
    w = World(seed, params)
    w.start()
    for f in faults:
        w.sim.at(f.at, w.apply_fault, f)
    after = w.check if full_check else _nothing
    if not full_check:
        w.sim.at(0.25, w.sweep)
    w.sim.run_until(params.safety_s, after)
    w.heal_all()
    acked_before = len(w.acked)
    t = params.safety_s
    deadline = params.safety_s + params.liveness_s
    while t < deadline:
        t += 0.5
        w.sim.run_until(t, after)
        if w.converged() and len(w.acked) > acked_before and t > params.safety_s + 2:
            break
    else:
        bs = [w.raft.truth.get("sim", s) for s in w.sets]
        w.fail(f"no convergence {params.liveness_s}s after healing: sets {[(b.master_id, b.master_epoch) for b in bs]}, "
               f"acked before {acked_before} after {len(w.acked)}, roles "
               f"{[(b.name, b.role.value, b.epoch, b.confirm, len(b.log)) for b in w.brokers.values()]}")
    return Outcome(seed, w.timeline.hexdigest(), w.sim.events, w.stats["faults"], len(w.acked), w.sent,
                   w.stats.get("elections", 0), w.raft.elections, dict(w.stats))
