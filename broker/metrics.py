"""What a broker exports to Prometheus at scrape time: role and epoch, fencing, the store's
offsets, segments and disk use, messages stored per topic, replication (sync-state-set size and
each follower's lag as seen by the master, or this follower's own lag), and request counters.

Owns: turning a running `BrokerServer` into gauge rows; never changes anything.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

Row = tuple[str, str, dict[str, str], float]


def broker_rows(server: Any) -> Iterator[Row]:
    cfg, store, hooks = server.config, server.store, server.hooks
    if store is None:
        return
    me = {"cluster": cfg.cluster, "broker_set": cfg.broker_set}
    role = hooks.role()
    yield "orbitmq_broker_role", "1 for this replica's current role", {**me, "role": role}, 1
    yield "orbitmq_broker_epoch", "master epoch this replica is in", me, hooks.epoch()
    yield ("orbitmq_gc_frozen_objects", "startup objects exempt from full garbage collections (common/gc_freeze.py)",
           me, gc.get_freeze_count())
    status: dict[str, Any] = hooks.status() if hasattr(hooks, "status") else {}
    if hooks.is_master() and "lease_ok" in status:
        yield ("orbitmq_broker_fenced", "1 while this master refuses writes (controller lease expired)", me,
               0 if status["lease_ok"] else 1)
    st = store.stats()
    for key, help_ in (("max_physical_offset", "end of the commitlog (bytes)"),
                       ("min_physical_offset", "start of the retained commitlog (bytes)"),
                       ("confirm_offset", "what every in-sync replica holds (bytes); consumers see up to it"),
                       ("dispatched_offset", "indexed up to (bytes)"),
                       ("flushed_offset", "fsynced up to (bytes)"),
                       ("segments", "commitlog segment files"),
                       ("flushes", "fdatasync calls so far")):
        yield f"orbitmq_store_{key}", help_, me, st.get(key, 0)
    used, total = store.disk_usage()
    if total:
        yield "orbitmq_store_disk_used_ratio", "used / size of the store's file system", me, used / total
    per_topic: dict[str, int] = {}
    for topic, q in store.queues():
        per_topic[topic] = per_topic.get(topic, 0) + store.max_offset(topic, q)
    for topic, n in per_topic.items():
        yield "orbitmq_topic_stored_messages", "messages ever stored per topic (sum of queue max offsets)", \
            {**me, "topic": topic}, n
    if "sss" in status:
        yield "orbitmq_sync_state_set_size", "members of the sync-state-set (master's view)", me, len(status["sss"])
        end = st.get("max_physical_offset", 0)
        for follower, ack in (status.get("acks") or {}).items():
            yield ("orbitmq_replication_lag_bytes", "master's end minus what a follower acknowledged",
                   {**me, "follower": str(follower)}, max(0, end - ack))
    if "lag" in status:
        yield "orbitmq_follower_lag_bytes", "this follower's distance behind its master", me, status["lag"]
    limit_stats = getattr(server.service, "limit_stats", None)
    for key, v in (limit_stats() if limit_stats is not None else {}).items():
        yield f"orbitmq_broker_{key}", f"load limits: {key}", me, v
    for key, v in list(getattr(server.service, "stats", {}).items()):
        if isinstance(v, int | float) and not isinstance(v, bool):
            yield f"orbitmq_broker_{key}", f"broker counter {key}", me, v
