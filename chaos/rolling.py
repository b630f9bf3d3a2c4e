"""`orbitmq cluster rolling-restart`: restart every process of a local cluster one at a time, in
the order chaos/rolling_plan.py gives, waiting for the cluster to be whole between steps.

Owns: carrying out each step on a `ChaosCluster` (SIGTERM, which makes a master hand off first;
start again with the same config and data) and the health wait after it: the restarted process
answers, a controller leader is known and every controller answers, every broker set has a
master whose sync-state-set holds all its replicas, and the name servers serve the routes. It
decides nothing about the order (the plan does) and never touches a process's data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from orbitmq.chaos.cluster import ChaosCluster, ClusterError
from orbitmq.chaos.rolling_plan import Node, Step, next_step


@dataclass
class StepRecord:
    node: str
    kind: str
    started: float          # wall clock
    restart_s: float        # SIGTERM to started again
    healthy_s: float        # SIGTERM to the whole cluster healthy again


def nodes_of(cluster: ChaosCluster) -> list[Node]:
    return [Node(n.name, n.kind, n.broker_set or "", bool(n.learner)) for n in cluster.nodes.values()]


def healthy(cluster: ChaosCluster, node: str | None = None) -> bool:
    """The restarted `node` answers; a controller leader exists and every controller answers;
    every set has a master with a full sync-state-set; routes are served (`ChaosCluster.ready`)."""
    if node is not None and not cluster.alive(node):
        raise ClusterError(f"{node} exited after its restart; see {cluster.log_path(node)}")
    if cluster.controller_leader() is None:
        return False
    for n in cluster.nodes.values():
        if n.kind == "controller" and cluster.controller_metadata(n.name) is None:
            return False
    if node is not None and cluster.node(node).kind == "broker" and cluster.broker_status(node) is None:
        return False
    return cluster.ready()


def wait_healthy(cluster: ChaosCluster, node: str | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if healthy(cluster, node):
                return
        except ClusterError:
            raise
        except Exception:  # noqa: BLE001 - a process still starting, no leader yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster was not healthy again within {timeout}s after restarting {node}")
        time.sleep(0.1)


def rolling_restart(cluster: ChaosCluster, step_timeout_s: float = 180.0,
                    on_step: Callable[[str, Step | StepRecord], None] | None = None) -> list[StepRecord]:
    """Restart every process once, in the plan's order; returns one record per step. Waits for a
    healthy cluster before the first step and after each one (TimeoutError if it is not)."""
    wait_healthy(cluster, None, step_timeout_s)
    nodes = nodes_of(cluster)
    done: set[str] = set()
    out: list[StepRecord] = []
    while True:
        masters = {s: cluster.master_of(s) for s in cluster.broker_sets()}
        step = next_step(nodes, done, masters, cluster.controller_leader())
        if step is None:
            return out
        if on_step is not None:
            on_step("start", step)
        wall, t0 = time.time(), time.monotonic()
        cluster.restart(step.node)
        restarted = time.monotonic() - t0
        wait_healthy(cluster, step.node, step_timeout_s)
        rec = StepRecord(step.node, step.kind, wall, round(restarted, 3), round(time.monotonic() - t0, 3))
        out.append(rec)
        done.add(step.node)
        if on_step is not None:
            on_step("done", rec)


def records_json(records: list[StepRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
