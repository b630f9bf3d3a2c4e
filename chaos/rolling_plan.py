"""The order of a rolling restart (pure): which process of a cluster to restart next.

Owns: the safe order, decided one step at a time on the cluster as it is now (the master of a
set may move while the run goes on): every broker set's learners, then its followers, then its
master (which hands mastership to a caught-up follower on SIGTERM, broker/ha/handoff.py); then
the name servers one by one; then the controllers one by one, the Raft leader last. No processes,
no clocks: `orbitmq cluster rolling-restart` (chaos/rolling.py) restarts what this returns and
waits for the cluster to be whole again before asking for the next step.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

# step kinds, in the order they come
KINDS = ("learner", "follower", "master", "namesrv", "controller", "controller_leader")


@dataclass(frozen=True)
class Node:
    name: str
    kind: str               # "broker", "namesrv" or "controller"
    broker_set: str = ""
    learner: bool = False


@dataclass(frozen=True)
class Step:
    node: str
    kind: str               # one of KINDS


def kind_of(node: Node, masters: Mapping[str, str | None], leader: str | None) -> str:
    """What restarting `node` is, given the current masters (per set) and controller leader."""
    if node.kind == "broker":
        if node.learner:
            return "learner"
        return "master" if masters.get(node.broker_set) == node.name else "follower"
    if node.kind == "namesrv":
        return "namesrv"
    return "controller_leader" if node.name == leader else "controller"


def next_step(nodes: list[Node], done: Set[str], masters: Mapping[str, str | None], leader: str | None) -> Step | None:
    """The next node to restart (None: every node was restarted). Among the nodes not `done`, the
    first kind in KINDS order; within a kind, the order of `nodes`."""
    pending = [n for n in nodes if n.name not in done]
    if not pending:
        return None
    rank = {k: i for i, k in enumerate(KINDS)}
    best = min(pending, key=lambda n: (rank[kind_of(n, masters, leader)], nodes.index(n)))
    return Step(best.name, kind_of(best, masters, leader))
