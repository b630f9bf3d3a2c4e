"""The seeded nemesis schedule: which faults, when, for how long, as plain data. Pure: one
`random.Random` from the seed, no clock, no cluster; the same seed and options give the same list.

A fault names roles ("the master", "follower #1", "the controller leader"), not processes:
`resolve(fault, view)` turns it into concrete `Action`s for one observed `View` of the cluster
(also pure), and the driver (`nemesis_driver.py`) executes them when it injects the fault.
Kinds come in groups (master, follower links, controllers, other); a combination is two kinds of
different groups injected together. Kinds are dealt from a shuffled deck so that a short run sees
as many different kinds as it has faults.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# kind -> (group, hold time range in s: how long the fault stays before it is healed)
KINDS: dict[str, tuple[str, tuple[float, float]]] = {
    "kill_master": ("master", (3.0, 6.0)),                  # SIGKILL; healed by a restart
    "pause_master": ("master", (4.5, 7.0)),                 # SIGSTOP past the heartbeat timeout; SIGCONT
    "isolate_master_controllers": ("master", (5.0, 8.0)),   # master <-/-> controllers only: it must fence
    "isolate_master_followers": ("master", (5.0, 8.0)),     # master <-/-> its followers and learners only
    "cut_follower": ("follower", (4.0, 8.0)),               # one follower <-/-> every other node
    "slow_replication": ("follower", (4.0, 8.0)),           # latency + bandwidth on follower -> master
    "flap_link": ("follower", (3.0, 6.0)),                  # reset_peer on follower -> master
    "kill_controller_leader": ("controller", (3.0, 6.0)),   # SIGKILL the Raft leader; restart
    "partition_controllers": ("controller", (5.0, 8.0)),    # leader alone | the other two
    "kill_learner": ("other", (3.0, 6.0)),                  # SIGKILL a learner; restart
    "expiry_under_load": ("other", (8.0, 12.0)),            # filler load on small segments, short retention
}
PROCESS_KINDS = ("kill_master", "pause_master", "kill_controller_leader", "kill_learner")
NETWORK_KINDS = ("isolate_master_controllers", "isolate_master_followers", "cut_follower",
                 "slow_replication", "flap_link", "partition_controllers")
DEFAULT_KINDS = PROCESS_KINDS + NETWORK_KINDS          # expiry_under_load only on request (long runs)


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: inject at `at_s` (seconds after the nemesis starts), heal `hold_s` later."""

    index: int
    at_s: float
    hold_s: float
    kinds: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "+".join(self.kinds)

    def to_dict(self) -> dict:
        return {"index": self.index, "at_s": self.at_s, "hold_s": self.hold_s, "kinds": list(self.kinds),
                "params": dict(self.params)}


def _params(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind in ("cut_follower", "slow_replication", "flap_link"):
        p: dict[str, Any] = {"follower": rng.randrange(8)}     # index into the live followers, modulo
        if kind == "slow_replication":
            p.update(latency_ms=rng.choice([50, 100, 200, 400]), jitter_ms=rng.choice([0, 20, 50]),
                     rate_kbps=rng.choice([64, 128, 256, 1024]))
        return p
    if kind == "kill_learner":
        return {"learner": rng.randrange(8)}
    if kind == "expiry_under_load":
        return {"filler_kib": rng.choice([4, 16, 32])}
    return {}


def schedule(seed: int, duration_s: float, kinds: Sequence[str] = DEFAULT_KINDS, *, warmup_s: float = 5.0,
             gap_s: tuple[float, float] = (4.0, 8.0), combo_ratio: float = 0.25,
             tail_s: float = 5.0) -> list[Fault]:
    """Faults for a run of `duration_s` seconds: the first after `warmup_s`, each followed by a
    recovery gap drawn from `gap_s`; none still held `tail_s` before the end. Every `kinds` entry
    must be in KINDS; `combo_ratio` is the chance that a fault is a combination of two."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {sorted(KINDS)}")
    if not kinds:
        raise ValueError("need at least one fault kind")
    if duration_s <= 0 or warmup_s < 0 or gap_s[0] < 0 or gap_s[1] < gap_s[0] or not 0 <= combo_ratio <= 1:
        raise ValueError("need duration_s > 0, warmup_s >= 0, 0 <= gap min <= gap max, 0 <= combo_ratio <= 1")
    rng = random.Random(f"orbitmq-nemesis:{seed}")
    kinds = list(dict.fromkeys(kinds))          # stable de-duplication
    deck: list[str] = []
    out: list[Fault] = []
    t = warmup_s
    while True:
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        first = deck.pop()
        chosen = [first]
        others = [k for k in kinds if KINDS[k][0] != KINDS[first][0]]
        if others and rng.random() < combo_ratio:
            chosen.append(rng.choice(others))
        hold = max(rng.uniform(*KINDS[k][1]) for k in chosen)
        if t + hold > duration_s - tail_s:
            break
        params: dict[str, Any] = {}
        for k in chosen:
            params.update(_params(k, rng))
        out.append(Fault(len(out), round(t, 3), round(hold, 3), tuple(chosen), params))
        t += hold + rng.uniform(*gap_s)
    return out


def describe(faults: Sequence[Fault]) -> str:
    """One line per fault, for the human summary and replay notes."""
    return "\n".join(f"  #{f.index:<3} t+{f.at_s:7.2f}s hold {f.hold_s:5.2f}s  {f.name}"
                     + (f"  {f.params}" if f.params else "") for f in faults)


# ---- roles -> actions -------------------------------------------------------------------------------------

class Skip(ValueError):
    """The fault cannot be injected now: a role it needs has nobody (no master, no follower...)."""


@dataclass(frozen=True)
class View:
    """The cluster as observed just before injecting: node names per role."""

    master: str | None
    followers: tuple[str, ...]        # non-learner replicas of the set that are not master
    learners: tuple[str, ...]
    replicas: tuple[str, ...]         # every replica of the set, learners included
    controllers: tuple[str, ...]
    leader: str | None                # controller leader
    nodes: tuple[str, ...]            # every node of the cluster


@dataclass(frozen=True)
class Action:
    """One thing to do: op is kill | pause | partition (a <-/-> b) | slow (a -> b) | flap (a -> b) | filler."""

    kind: str
    op: str
    a: tuple[str, ...] = ()
    b: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        """The nodes this action is about (shown in the timeline)."""
        return list(self.a) + (list(self.b) if self.op in ("slow", "flap") else [])


def _one(names: Sequence[str], index: int, what: str) -> str:
    if not names:
        raise Skip(f"no {what}")
    return sorted(names)[index % len(names)]


def resolve(fault: Fault, view: View) -> list[Action]:
    """Every kind of `fault` as actions on `view`'s nodes (all resolved before anything is done, so
    both kinds of a combination see the same master). Raises Skip if a role is empty."""
    p = fault.params
    out: list[Action] = []

    def master() -> str:
        if not view.master:
            raise Skip("no master")
        return view.master

    def leader() -> str:
        if not view.leader:
            raise Skip("no controller leader")
        return view.leader

    for kind in fault.kinds:
        if kind == "kill_master":
            out.append(Action(kind, "kill", (master(),)))
        elif kind == "pause_master":
            out.append(Action(kind, "pause", (master(),)))
        elif kind == "isolate_master_controllers":
            out.append(Action(kind, "partition", (master(),), tuple(view.controllers)))
        elif kind == "isolate_master_followers":
            m = master()
            out.append(Action(kind, "partition", (m,), tuple(n for n in view.replicas if n != m)))
        elif kind in ("cut_follower", "slow_replication", "flap_link"):
            f = _one(view.followers, int(p.get("follower", 0)), "follower")
            if kind == "cut_follower":
                out.append(Action(kind, "partition", (f,), tuple(n for n in view.nodes if n != f)))
            elif kind == "slow_replication":
                out.append(Action(kind, "slow", (f,), (master(),),
                                  {k: int(p.get(k, d)) for k, d in (("latency_ms", 100), ("jitter_ms", 0),
                                                                      ("rate_kbps", 0))}))
            else:
                out.append(Action(kind, "flap", (f,), (master(),)))
        elif kind == "kill_controller_leader":
            out.append(Action(kind, "kill", (leader(),)))
        elif kind == "partition_controllers":
            ld = leader()
            out.append(Action(kind, "partition", (ld,), tuple(n for n in view.controllers if n != ld)))
        elif kind == "kill_learner":
            out.append(Action(kind, "kill", (_one(view.learners, int(p.get("learner", 0)), "learner"),)))
        elif kind == "expiry_under_load":
            out.append(Action(kind, "filler", params={"filler_kib": int(p.get("filler_kib", 16))}))
        else:
            raise Skip(f"unknown kind {kind}")
    return out
