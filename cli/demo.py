"""`orbitmq demo`: the failover demo on a local HA cluster.

Starts 3 controllers, a name server and a broker set of 3 replicas plus 1 learner (real processes),
sends messages with sync acknowledgement through the client library, kills the master with
SIGKILL, measures the time until sends succeed again, restarts the old master (it rejoins as a
follower and truncates any unconfirmed tail), then consumes the topic and checks that every
acknowledged message is there and that no two masters ever shared an epoch. Prints each step, then
one JSON object as the last line. Exit code 0 only if nothing acknowledged was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from orbitmq.common import config, proc
from orbitmq.common.local_cluster import ClusterSpec, LocalCluster
from orbitmq.common.verify import MasterChange, compare_delivery, epoch_conflicts

TOPIC = "DemoTopic"
BROKER_SET = "broker-a"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="failover demo: kill the master under load, prove nothing acked is lost",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", help="cluster data and logs (default: a new temporary directory)")
    p.add_argument("--kills", type=int, default=2, help="masters to kill, one after another (default 2)")
    p.add_argument("--rate", type=float, default=200.0, help="sync sends per second (default 200)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of sending before each kill (default 3)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="cluster spec override (see `orbitmq cluster --help`)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(func=run)


@dataclass
class Load:
    """A producer thread sending numbered messages at a fixed rate, recording what was acknowledged."""

    namesrv: list[str]
    rate: float
    acked: dict[str, float] = field(default_factory=dict)   # msg_id -> ack time (monotonic)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from orbitmq.client import Message, OrbitError, Producer

        deadline = time.monotonic() + 600  # bounded whatever happens
        with Producer(self.namesrv, send_timeout_s=3.0, retries=3, route_refresh_s=5.0) as producer:
            seq = 0
            next_at = time.monotonic()
            while not self.stop.is_set() and time.monotonic() < deadline:
                seq += 1
                try:
                    r = producer.send(Message(TOPIC, f"demo-{seq:08d}".encode(), keys=[str(seq)]))
                    self.acked[r.msg_id] = time.monotonic()
                except OrbitError:
                    self.failures += 1
                    time.sleep(0.05)
                next_at += 1.0 / self.rate
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at, time.monotonic() - 1.0)

    def acked_after(self, t: float) -> float | None:
        later = [v for v in list(self.acked.values()) if v > t]
        return min(later) if later else None


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


def consume_all(namesrv: list[str], expected: set[str], timeout: float) -> list[str]:
    """Read the whole topic with a fresh group until every expected id is seen (or time runs out)."""
    from orbitmq.client import PullConsumer

    seen: list[str] = []
    consumer = PullConsumer(f"demo-check-{int(time.time() * 1000)}", namesrv, auto_commit=False)
    consumer.subscribe(TOPIC)
    try:
        deadline = time.monotonic() + timeout
        missing = set(expected)
        while missing and time.monotonic() < deadline:
            for m in consumer.poll(timeout=1.0):
                seen.append(m.msg_id)
                missing.discard(m.msg_id)
        # a little longer, to count duplicates that arrive right after the last expected id
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            seen.extend(m.msg_id for m in consumer.poll(timeout=0.2))
    finally:
        consumer.close()
    return seen


def master_history(addrs: list[str], cluster: str) -> list[MasterChange]:
    from orbitmq.controller.client import ControllerClient

    async def go():
        c = ControllerClient(addrs)
        try:
            return await c.get_history(cluster, BROKER_SET)
        finally:
            await c.close()

    return [MasterChange(ch.broker_set, ch.master_epoch, ch.master_id) for ch in asyncio.run(go())]


def run(args: argparse.Namespace) -> int:
    quiet = args.json
    overrides = list(args.set)
    overrides.append(f"dir={args.dir or tempfile.mkdtemp(prefix='orbitmq-demo-')}")
    overrides.append(f"broker_sets={BROKER_SET}")
    try:
        spec = config.load(ClusterSpec, None, None, overrides)
    except (config.ConfigError, ValueError) as e:
        print(f"orbitmq demo: {e}", file=sys.stderr)
        return 2
    if args.kills < 1 or args.rate <= 0:
        print("orbitmq demo: need --kills >= 1 and --rate > 0", file=sys.stderr)
        return 2
    cluster = LocalCluster(spec)
    load = Load(cluster.namesrv_addrs, args.rate)
    sender = threading.Thread(target=load.run, daemon=True)
    result: dict = {"kills": [], "cluster_dir": str(cluster.root)}
    try:
        _say(quiet, f"1. starting {spec.controllers} controllers, a name server and {BROKER_SET}: "
                    f"{spec.replicas} replicas + {spec.learners} learner (logs in {cluster.logs_dir})")
        cluster.start()
        masters = cluster.wait_ready(120)
        _say(quiet, cluster.describe())
        from orbitmq.client import Admin

        with Admin(cluster.namesrv_addrs) as admin:
            admin.create_topic(TOPIC, 4)
        _say(quiet, f"2. topic {TOPIC} created; sending {args.rate:.0f} msgs/s, each acknowledged only "
                    "when every in-sync replica holds it")
        sender.start()
        for k in range(args.kills):
            time.sleep(args.warmup)
            victim = masters[BROKER_SET]
            acked_before = len(load.acked)
            t_kill = time.monotonic()
            cluster.kill9(victim)
            _say(quiet, f"3.{k + 1} kill -9 {victim} (the master) after {acked_before} acknowledged sends")
            first_ok = proc.wait_until(lambda t=t_kill: load.acked_after(t), 60, 0.02, "a send to succeed after the kill")
            failover_s = first_ok - t_kill
            new_master = proc.wait_until(lambda v=victim: (m := cluster.master_of(BROKER_SET)) != v and m, 30, 0.1,
                                         "a new master")
            st = cluster.status(new_master)
            _say(quiet, f"    {new_master} is master in epoch {st.epoch if st else '?'}; "
                        f"sends succeed again {failover_s:.2f} s after the kill")
            cluster.start_broker(victim)
            masters = cluster.wait_ready(120)
            st_old = cluster.status(victim)
            _say(quiet, f"    {victim} restarted and rejoined as {st_old.role if st_old else '?'}; "
                        "sync-state-set full again")
            result["kills"].append({"killed": victim, "new_master": new_master, "failover_s": round(failover_s, 3)})
        time.sleep(1.0)
        load.stop.set()
        sender.join(timeout=15)
        acked = set(load.acked)
        _say(quiet, f"4. stopped sending: {len(acked)} acknowledged, {load.failures} sends failed (and were "
                    "reported to the caller as failures)")
        delivered = consume_all(cluster.namesrv_addrs, acked, timeout=90)
        report = compare_delivery(acked, delivered)
        history = master_history(cluster.controller_addrs, spec.name)
        conflicts = epoch_conflicts(history)
        _say(quiet, f"5. consumed {report.delivered} messages: {len(report.lost)} acknowledged messages lost, "
                    f"{len(report.duplicated)} delivered more than once")
        _say(quiet, "6. master history: " + ", ".join(f"epoch {c.epoch} -> broker {c.master_id}" for c in history)
             + ("; no two masters shared an epoch" if not conflicts else f"; CONFLICTS: {conflicts}"))
        fo = sorted(k["failover_s"] for k in result["kills"])
        result.update(acked=report.acked, delivered=report.delivered, lost_acked=len(report.lost),
                      duplicated=len(report.duplicated), failed_sends=load.failures,
                      failover_min_s=fo[0], failover_median_s=round(statistics.median(fo), 3), failover_max_s=fo[-1],
                      epochs=[{"epoch": c.epoch, "master_id": c.master_id} for c in history],
                      epoch_conflicts=conflicts, ok=report.ok and not conflicts)
    except TimeoutError as e:
        load.stop.set()
        print(f"orbitmq demo: {e}\n{cluster.describe()}", file=sys.stderr)
        result.update(ok=False, error=str(e))
    finally:
        load.stop.set()
        cluster.stop()
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result.get("ok") else 1
