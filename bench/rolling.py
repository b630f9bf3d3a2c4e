"""`orbitmq bench rolling`: a rolling restart of a whole local cluster under load, measured.

Starts a local cluster (`orbitmq cluster up`: 3 controllers, 2 name servers, a broker set of 3
replicas + 1 learner, real processes), runs the chaos workload on it (producers with sync
acknowledgement, one send every `--interval-ms` each, consumers reading concurrently), runs
`orbitmq cluster rolling-restart` (chaos/rolling.py: learners, followers, the master by handoff,
name servers, controllers with the Raft leader last; a healthy cluster between steps), then stops
the load, reads the whole topic back with a new group and checks it (chaos/checker.py).

Reports `failed_sends`, `lost_acked`, `duplicates`, `order_violations`, per step kind the
longest time without any acknowledgement while a step of that kind ran (`max_unavailable_s`),
the steps and `total_s` (the rolling restart's whole time). Targets: lost_acked 0, failed_sends
0, max_unavailable_s <= 0.5 for handoffs (kind `master`).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orbitmq.chaos import checker

TOPIC = "RollingBench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--producers", type=int, default=2, help="producer threads (sync sends)")
    p.add_argument("--interval-ms", type=float, default=5.0, help="each producer sends once every this many ms")
    p.add_argument("--consumers", type=int, default=2, help="consumer threads reading while it runs")
    p.add_argument("--send-timeout-s", type=float, default=10.0, help="the producers' send timeout")
    p.add_argument("--warmup-s", type=float, default=5.0, help="load before the rolling restart starts")
    p.add_argument("--step-timeout-s", type=float, default=180.0, help="health wait per step")
    p.add_argument("--dir", default=None, help="cluster directory (default: a new temp dir, deleted unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the cluster directory (logs) afterwards")


def max_gap(acks: Iterable[float], start: float, end: float) -> float:
    """The longest interval inside [start, end] in which no acknowledgement arrived (`acks` are
    the times acknowledgements arrived, any order; the window's edges count as arrivals)."""
    pts = sorted(a for a in acks if start < a < end)
    prev, best = start, 0.0
    for a in [*pts, end]:
        best = max(best, a - prev)
        prev = a
    return best


def per_kind(steps: list[dict[str, Any]], acks: list[float]) -> dict[str, dict[str, float]]:
    """Per step kind: how many steps, and the longest time without an acknowledgement in any of them."""
    out: dict[str, dict[str, float]] = {}
    for s in steps:
        gap = max_gap(acks, s["started"], s["started"] + s["healthy_s"])
        k = out.setdefault(s["kind"], {"steps": 0, "max_unavailable_s": 0.0})
        k["steps"] += 1
        k["max_unavailable_s"] = round(max(k["max_unavailable_s"], gap), 3)
    return out


def run(args: argparse.Namespace) -> dict:
    from orbitmq.chaos.cluster import ChaosCluster
    from orbitmq.chaos.rolling import records_json, rolling_restart
    from orbitmq.chaos.workload import Workload, WorkloadConfig, read_back
    from orbitmq.client import Admin
    from orbitmq.common.local_cluster import ClusterSpec

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="orbitmq-rolling-"))
    spec = ClusterSpec(broker_settings={"register_interval_s": "5"})
    cluster = ChaosCluster.up(root, spec, chaos=False, ready_timeout=180, fresh=True)
    wl = None
    try:
        with Admin(cluster.namesrv_addrs) as admin:
            admin.create_topic(TOPIC, queues=4)
        rate = args.producers * 1000.0 / args.interval_ms
        wl = Workload(WorkloadConfig(namesrv=cluster.namesrv_addrs, topic=TOPIC, producers=args.producers,
                                     keyed_producers=min(1, args.producers), rate=rate, consumers=args.consumers,
                                     group="rolling-readers", send_timeout_s=args.send_timeout_s,
                                     max_seconds=3600.0))
        wl.start()
        time.sleep(args.warmup_s)
        t0 = time.monotonic()
        records = rolling_restart(cluster, args.step_timeout_s)
        total = time.monotonic() - t0
        time.sleep(2.0)
        wl.stop_producers()
        wl.drain(30.0)
        wl.stop_consumers()
        sends = list(wl.sends)
        acked = {s.id: (s.broker_set, s.queue_id, s.queue_offset) for s in sends if s.ok}
        readback, floors = read_back(cluster.namesrv_addrs, TOPIC, acked, 120.0)
        lost, expired = checker.lost_acked(sends, readback, floors, live=wl.deliveries)
        dup, _ = checker.duplicates([*wl.deliveries, *readback])
        steps = records_json(records)
        kinds = per_kind(steps, [s.end for s in sends if s.ok])
        failed = [s for s in sends if not s.ok]
        errors: dict[str, int] = {}
        for s in failed:
            errors[s.error] = errors.get(s.error, 0) + 1
        return {
            "sends": len(sends), "acked": len(acked), "failed_sends": len(failed), "send_errors": errors,
            "lost_acked": len(lost), "expired_unread": len(expired), "duplicates": dup,
            "order_violations": len(checker.order_violations(sends, [*wl.deliveries, *readback])),
            "max_unavailable_s": {k: v["max_unavailable_s"] for k, v in kinds.items()},
            "steps_by_kind": {k: int(v["steps"]) for k, v in kinds.items()},
            "handoff_max_unavailable_s": kinds.get("master", {}).get("max_unavailable_s"),
            "total_s": round(total, 3),
            "steps": [{"node": s["node"], "kind": s["kind"], "healthy_s": s["healthy_s"]} for s in steps],
            "interval_ms": args.interval_ms, "producers": args.producers, "consumers": args.consumers,
            "send_timeout_s": args.send_timeout_s,
            "ok": not lost and not failed,
        }
    finally:
        if wl is not None:
            wl.stop_producers(5.0)
            wl.stop_consumers(5.0)
        cluster.down()
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)
