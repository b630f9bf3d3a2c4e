"""`orbitmq demo`: the failover demo on a local HA cluster.

Starts 3 controllers, name servers and a broker set of 3 replicas plus 1 learner (real processes,
every link through a TCP proxy), sends messages with sync acknowledgement through the client
library, and then:
- kills the master with SIGKILL (--kills times), measures the time until sends succeed again and
  restarts the old master (it rejoins as a follower and truncates any unconfirmed tail);
- isolates the master from the controllers only (--network-faults times): clients and followers
  still reach it, but it must fence itself and acknowledge nothing while a new master is elected;
  then heals the network and the old master rejoins as a follower.
Finally it consumes the topic and checks that every acknowledged message is there, that no two
masters ever shared an epoch and that no deposed master acknowledged anything. Prints each step,
where the timeline picture (PNG) is, then one JSON object as the last line. Exit code 0 only if
nothing acknowledged was lost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from orbitmq.chaos.checker import (
    FaultWindow,
    MasterChange,
    compare_delivery,
    deposed_acks,
    epoch_conflicts,
)
from orbitmq.common import config, proc
from orbitmq.common.local_cluster import ClusterSpec

TOPIC = "DemoTopic"
BROKER_SET = "broker-a"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="failover demo: kill and isolate the master under load, nothing acked is lost",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", help="cluster data, logs and the picture (default: a new temporary directory)")
    p.add_argument("--kills", type=int, default=2, help="masters to kill, one after another (default 2)")
    p.add_argument("--network-faults", type=int, default=1,
                   help="times to isolate the master from the controllers (default 1)")
    p.add_argument("--rate", type=float, default=200.0, help="sync sends per second (default 200)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of sending before each fault (default 3)")
    p.add_argument("--hold", type=float, default=6.0, help="seconds a network fault is held (default 6)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="cluster spec override (see `orbitmq cluster --help`)")
    p.add_argument("--secure", action="store_true",
                   help="TLS on every link (throwaway CA and certificates under DIR/cluster/tls)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(func=run)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


def _describe(cluster: Any) -> str:
    st = cluster.status()
    s = st.get("sets", {}).get(BROKER_SET, {})
    return (f"    controller leader {st.get('controller_leader')}; {BROKER_SET}: master {s.get('master')} "
            f"epoch {s.get('epoch')}, sync-state-set {', '.join(s.get('sss', []))}, "
            f"learners {', '.join(s.get('learners', []))}")


def _role(cluster: Any, node: str) -> str | None:
    """'master', 'follower (in the sync-state-set)', 'learner', or None while it has not rejoined."""
    s = cluster.status().get("sets", {}).get(BROKER_SET, {})
    if s.get("master") == node:
        return "master"
    if node in s.get("sss", []):
        return "follower (in the sync-state-set)"
    if node in s.get("learners", []):
        return "learner"
    return None


def _wait_new_master(cluster: Any, old: str, timeout: float) -> str:
    return proc.wait_until(lambda: (m := cluster.master_of(BROKER_SET)) != old and m, timeout, 0.1, "a new master")


def _wait_whole(cluster: Any, replicas: int, timeout: float) -> str:
    """Wait for a master whose sync-state-set holds every replica; returns the master."""

    def whole() -> str | None:
        s = cluster.status().get("sets", {}).get(BROKER_SET, {})
        return s.get("master") if s.get("master") and len(s.get("sss", [])) >= replicas else None

    return proc.wait_until(whole, timeout, 0.2, "a master with a full sync-state-set")


def run(args: argparse.Namespace, cluster_factory: Any = None) -> int:
    quiet = args.json
    overrides = list(args.set)
    root = Path(args.dir or tempfile.mkdtemp(prefix="orbitmq-demo-")).resolve()
    overrides.append(f"dir={root / 'cluster'}")
    overrides.append(f"broker_sets={BROKER_SET}")
    if getattr(args, "secure", False):
        overrides.append("secure=true")
    try:
        spec = config.load(ClusterSpec, None, None, overrides)
    except (config.ConfigError, ValueError) as e:
        print(f"orbitmq demo: {e}", file=sys.stderr)
        return 2
    if args.kills < 0 or args.network_faults < 0 or args.kills + args.network_faults < 1 or args.rate <= 0:
        print("orbitmq demo: need --kills >= 0, --network-faults >= 0 (at least one fault) and --rate > 0",
              file=sys.stderr)
        return 2
    if cluster_factory is None:
        from orbitmq.chaos.cluster import ChaosCluster

        cluster_factory = ChaosCluster.up
    from orbitmq.chaos.timeline import plot_png, timeline_lines
    from orbitmq.chaos.workload import Workload, WorkloadConfig, read_back

    result: dict = {"kills": [], "network_faults": [], "cluster_dir": str(root / "cluster"), "secure": spec.secure}
    windows: list[FaultWindow] = []
    _say(quiet, f"1. starting {spec.controllers} controllers, name servers and {BROKER_SET}: "
                f"{spec.replicas} replicas + {spec.learners} learner, every link through a proxy"
                f"{' and TLS (throwaway CA)' if spec.secure else ''} "
                f"(logs in {root / 'cluster'})")
    from orbitmq.chaos.run import start_cluster

    cluster: Any = None
    load: Workload | None = None
    t_start = time.time()
    try:
        cluster = start_cluster(cluster_factory, root / "cluster", spec, lambda t: print(t, file=sys.stderr),
                                chaos=True)
        t_start = time.time()
        _wait_whole(cluster, spec.replicas, 120)
        _say(quiet, _describe(cluster))
        from orbitmq.client import Admin

        with Admin(cluster.namesrv_addrs) as admin:
            admin.create_topic(TOPIC, 4)
        _say(quiet, f"2. topic {TOPIC} created; sending {args.rate:.0f} msgs/s, each acknowledged only "
                    "when every in-sync replica holds it")
        load = Workload(WorkloadConfig(list(cluster.namesrv_addrs), TOPIC, producers=1, keyed_producers=0,
                                       rate=args.rate, consumers=0, max_seconds=900))
        load.start()
        step = 3
        for k in range(args.kills):
            time.sleep(args.warmup)
            victim = _wait_whole(cluster, spec.replicas, 120)
            acked_before = len(load.acked_ids())
            t_kill = time.time()
            cluster.kill(victim)
            _say(quiet, f"{step}.{k + 1} kill -9 {victim} (the master) after {acked_before} acknowledged sends")
            first_ok = proc.wait_until(lambda t=t_kill: load.first_ack_after(t), 60, 0.02,
                                       "a send to succeed after the kill")
            failover_s = first_ok - t_kill
            new_master = _wait_new_master(cluster, victim, 30)
            epoch = cluster.status().get("sets", {}).get(BROKER_SET, {}).get("epoch", "?")
            _say(quiet, f"    {new_master} is master in epoch {epoch}; sends succeed again {failover_s:.2f} s "
                        "after the kill")
            cluster.restart(victim)
            windows.append(FaultWindow("kill_master", t_kill, time.time(), (victim,)))
            _wait_whole(cluster, spec.replicas, 120)
            role = proc.wait_until(lambda v=victim: _role(cluster, v), 60, 0.2, f"{victim} to rejoin")
            _say(quiet, f"    {victim} restarted and rejoined as {role}; sync-state-set full again")
            result["kills"].append({"killed": victim, "new_master": new_master, "failover_s": round(failover_s, 3),
                                    "rejoined_as": role})
        step += 1
        controllers = [n for n in cluster.node_names() if n[:1] == "c" and n[1:].isdigit()]
        for k in range(args.network_faults):
            time.sleep(args.warmup)
            victim = _wait_whole(cluster, spec.replicas, 120)
            old_epoch = int(cluster.status().get("sets", {}).get(BROKER_SET, {}).get("epoch", 0))
            t_cut = time.time()
            cluster.partition([victim], controllers)
            _say(quiet, f"{step}.{k + 1} network: {victim} (the master) cut off from the controllers "
                        f"{', '.join(controllers)}; clients and followers still reach it")
            new_master = _wait_new_master(cluster, victim, 60)
            first_new = proc.wait_until(lambda t=t_cut, e=old_epoch: min(
                (s.end for s in list(load.sends) if s.ok and s.epoch > e and s.start >= t), default=None),
                60, 0.02, "a send acknowledged in a newer epoch")
            last_old = max((s.end for s in list(load.sends) if s.ok and s.epoch == old_epoch), default=t_cut)
            failover_s = first_new - t_cut
            fenced_s = max(0.0, last_old - t_cut)
            epoch = cluster.status().get("sets", {}).get(BROKER_SET, {}).get("epoch", "?")
            _say(quiet, f"    {victim} acknowledged for {fenced_s:.2f} s more (its lease), then fenced itself; "
                        f"{new_master} is master in epoch {epoch}; sends are acknowledged in the new epoch "
                        f"{failover_s:.2f} s after the cut")
            remaining = args.hold - (time.time() - t_cut)
            if remaining > 0:
                time.sleep(remaining)
            cluster.heal()
            windows.append(FaultWindow("isolate_master_controllers", t_cut, time.time(), (victim,)))
            _wait_whole(cluster, spec.replicas, 120)
            role = proc.wait_until(lambda v=victim: _role(cluster, v), 60, 0.2, f"{victim} to rejoin")
            _say(quiet, f"    network healed; {victim} rejoined as {role}")
            result["network_faults"].append({"fault": "isolate_master_controllers", "isolated": victim,
                                             "new_master": new_master, "failover_s": round(failover_s, 3),
                                             "old_master_acked_for_s": round(fenced_s, 3), "rejoined_as": role})
        time.sleep(1.0)
        load.stop_producers()
        t_end = time.time()
        acked = load.acked_ids()
        failed = sum(1 for s in load.sends if not s.ok)
        step += 1
        _say(quiet, f"{step}. stopped sending: {len(acked)} acknowledged, {failed} sends failed (and were "
                    "reported to the caller as failures)")
        back, _ = read_back(list(cluster.namesrv_addrs), TOPIC, acked, timeout=90)
        report = compare_delivery(acked, [d.id for d in back])
        history = [MasterChange(h["broker_set"], int(h["epoch"]), int(h["master_id"]), h.get("time_ms", 0) / 1000)
                   for h in cluster.controller_history() if h["broker_set"] == BROKER_SET]
        conflicts = epoch_conflicts(history)
        from orbitmq.chaos.run import broker_ids

        deposed = deposed_acks(load.sends, history, broker_ids({s.broker for s in load.sends if s.ok}))
        _say(quiet, f"{step + 1}. consumed {report.delivered} messages: {len(report.lost)} acknowledged messages lost, "
                    f"{len(report.duplicated)} delivered more than once; {len(deposed)} acknowledged by a "
                    "fenced or deposed master")
        _say(quiet, f"{step + 2}. master history: "
             + ", ".join(f"epoch {c.epoch} -> broker {c.master_id}" for c in history)
             + ("; no two masters shared an epoch" if not conflicts else f"; CONFLICTS: {conflicts}"))
        png = plot_png(root / "timeline.png", t_start, t_end, load.sends, windows, history,
                       title=f"orbitmq demo: {len(windows)} faults, {len(report.lost)} acknowledged lost")
        (root / "timeline.txt").write_text("\n".join(timeline_lines(t_start, windows, history)) + "\n")
        _say(quiet, f"{step + 3}. timeline picture: {png} (sends per second, faults as bands, elections as marks)")
        fo = sorted([k["failover_s"] for k in result["kills"]] + [n["failover_s"] for n in result["network_faults"]])
        result.update(acked=report.acked, delivered=report.delivered, lost_acked=len(report.lost),
                      duplicated=len(report.duplicated), failed_sends=failed,
                      failover_min_s=fo[0], failover_median_s=round(statistics.median(fo), 3), failover_max_s=fo[-1],
                      epochs=[{"epoch": c.epoch, "master_id": c.master_id} for c in history],
                      epoch_conflicts=conflicts, acks_by_deposed_master=len(deposed), picture=str(png),
                      ok=report.ok and not conflicts and not deposed)
    except Exception as e:  # noqa: BLE001 - any failure still ends with the JSON line (ok false)
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(f"orbitmq demo: {type(e).__name__}: {e}", file=sys.stderr)
        result.update(ok=False, error=f"{type(e).__name__}: {e}")
    finally:
        if load is not None:
            load.stop_producers(10)
        if cluster is not None:
            cluster.down()
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result.get("ok") else 1

