"""What a controller node exports to Prometheus at scrape time: Raft leadership, term and log
indexes, and per broker set its master, master epoch, sync-state-set size, live replicas and the
number of master changes (elections) recorded.

Owns: turning a running `ControllerService` into gauge rows; never changes anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Row = tuple[str, str, dict[str, str], float]


def controller_rows(service: Any) -> Iterator[Row]:
    raft = service.raft
    node = {"node": service.cfg.name}
    yield "orbitmq_controller_leader", "1 on the Raft leader", node, 1 if raft.is_leader() else 0
    status = raft.status()
    for key, name in (("raft_term", "term"), ("commit_idx", "commit_index"), ("last_applied", "last_applied"),
                      ("log_len", "log_entries")):
        if key in status:
            yield f"orbitmq_controller_raft_{name}", f"pysyncobj {key}", node, float(status[key])

    def per_set(state) -> list[Row]:
        rows: list[Row] = []
        elections: dict[tuple[str, str], int] = {}
        for h in state.history:
            k = (h.cluster, h.broker_set)
            elections[k] = elections.get(k, 0) + 1
        for (cluster, name), bs in state.sets.items():
            labels = {**node, "cluster": cluster, "broker_set": name}
            rows.append(("orbitmq_controller_master_epoch", "master epoch of the broker set", labels, bs.master_epoch))
            rows.append(("orbitmq_controller_master_id", "master broker id (-1: none)", labels,
                         bs.master_id if bs.master_id is not None else -1))
            rows.append(("orbitmq_controller_sync_state_set_size", "members of the sync-state-set", labels,
                         len(bs.sss)))
            rows.append(("orbitmq_controller_replicas", "registered replicas (learners included)", labels,
                         len(bs.replicas)))
            rows.append(("orbitmq_controller_master_changes", "master changes recorded in the history", labels,
                         elections.get((cluster, name), 0)))
        return rows

    yield from raft.read(per_set)
