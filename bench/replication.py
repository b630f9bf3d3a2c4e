"""`orbitmq bench replication`: replicated produce throughput, replication lag, failover time and
acknowledged-message loss, on real processes it starts itself (3 controllers, a name server, a
one-replica broker set and a three-replica set).

Phases, each bounded in count and time:
1. sync-acknowledged 1 KiB produce (batches, each one batch record unless --records messages,
   several in flight) to the 1-replica set and to the
   3-replica set (2 followers, default ack policy: every sync-state-set member holds it), in
   alternating slices (`--rounds`) so that load from elsewhere on the machine hits both alike:
   `replicated_vs_single` = replicated / single msgs/s (target >= 0.6); follower lag sampled during
   the load (`lag_bytes_max`) and the time the followers need to catch up after it (`catch_up_s`).
2. `--kills K` times: a producer sends one message at a time; kill -9 the master; time to the
   first acknowledged send on the new master (`failover_s`, median `failover_median_s`, target
   < 5 s); the old master restarts and rejoins as a follower.
3. every acknowledged message is looked for on the final master (`lost_acked`, must be 0).

`Cluster` (also used by tests/ha) starts and stops the processes by PID.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from orbitmq.broker.store import batch_record as br
from orbitmq.client.message import MsgIdGenerator
from orbitmq.common import proc
from orbitmq.common.grpc_errors import ERROR_KEY
from orbitmq.common.local_cluster import BrokerProc, ClusterSpec, LocalCluster
from orbitmq.common.tls_grpc import channel as tls_channel
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

TOPIC = "HaBench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=20_000, help="messages per throughput phase")
    p.add_argument("--seconds", type=float, default=8.0, help="time limit per throughput phase")
    p.add_argument("--batch", type=int, default=32, help="messages per SendMessage")
    p.add_argument("--in-flight", type=int, default=8, help="concurrent sync sends")
    p.add_argument("--body-size", type=int, default=1024)
    p.add_argument("--kills", type=int, default=3, help="kill -9 the master this many times")
    p.add_argument("--rounds", type=int, default=3, help="alternate single/replicated load slices this many times")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    p.add_argument("--records", choices=["batch", "messages"], default="batch",
                   help="send each batch as one batch record (default) or as per-message records")


# ---- the cluster ----------------------------------------------------------------------------------

def ha_cluster(root: Path, broker_settings: dict[str, str] | None = None) -> LocalCluster:
    """3 controllers and a name server under `root`; broker sets are added with `add_broker`."""
    spec = ClusterSpec(dir=str(root), broker_sets=[], controllers=3, namesrvs=1,
                       broker_settings={"register_interval_s": "5", **(broker_settings or {})})
    return LocalCluster(spec)


# ---- a client that follows the master of one broker set -------------------------------------------

class SetClient:
    """Sync sends to whichever replica of a broker set is master (found by GetBrokerStatus)."""

    def __init__(self, brokers: list[BrokerProc], batch_records: bool = True) -> None:
        self.brokers = brokers
        self.batch_records = batch_records
        self._ids = MsgIdGenerator()
        opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
        self.channels = {b.addr: tls_channel(b.addr, False, options=opts) for b in brokers}
        self.stubs = {a: broker_pb2_grpc.BrokerStub(c) for a, c in self.channels.items()}
        self.master: str | None = None

    def close(self) -> None:
        for c in self.channels.values():
            c.close()

    def status(self, addr: str, timeout: float = 1.0) -> broker_pb2.BrokerStatus | None:
        try:
            return self.stubs[addr].GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=timeout)
        except grpc.RpcError:
            return None

    def statuses(self) -> dict[str, broker_pb2.BrokerStatus | None]:
        return {b.addr: self.status(b.addr) for b in self.brokers}

    def find_master(self) -> str | None:
        best = None
        for addr, st in self.statuses().items():
            if st is not None and st.role == "MASTER" and (best is None or st.epoch > best[1]):
                best = (addr, st.epoch)
        self.master = best[0] if best else None
        return self.master

    def wait_master(self, timeout: float) -> str:
        return proc.wait_until(self.find_master, timeout, 0.1, "a master")

    def create_topic(self, queues: int = 4, timeout: float = 20.0) -> None:
        def go() -> bool:
            m = self.find_master()
            if m is None:
                return False
            self.stubs[m].CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
                topic=TOPIC, read_queues=queues, write_queues=queues, perm=6)), timeout=5)
            return True
        proc.wait_until(go, timeout, 0.2, "topic created on the master")

    def send(self, bodies: list[bytes], queue_id: int = -1, timeout: float = 5.0) -> broker_pb2.SendResponse:
        """One sync send to the current master; raises grpc.RpcError on refusal."""
        m = self.master or self.find_master()
        if m is None:
            raise RuntimeError("no master")
        if self.batch_records:   # one batch record, built once and stored as one commitlog record
            data = br.encode(TOPIC, bodies, tags=["t"] * len(bodies), id_prefix=self._ids.prefix,
                             id_first=self._ids.reserve(len(bodies)))
            req = broker_pb2.SendRequest(topic=TOPIC, queue_id=queue_id, batch=data)
        else:
            req = broker_pb2.SendRequest(topic=TOPIC, queue_id=queue_id,
                                         messages=[common_pb2.Message(topic=TOPIC, body=b, tags="t") for b in bodies])
        try:
            return self.stubs[m].SendMessage(req, timeout=timeout)
        except grpc.RpcError:
            self.master = None
            raise

    def read_all(self, addr: str, queues: int = 4, limit_s: float = 60.0) -> list[bytes]:
        """Every message body of the topic on `addr` (pulled from offset 0 of each queue)."""
        out: list[bytes] = []
        deadline = time.monotonic() + limit_s
        for q in range(queues):
            off = 0
            while time.monotonic() < deadline:
                r = self.stubs[addr].PullMessage(broker_pb2.PullRequest(
                    group="ha-check", topic=TOPIC, queue_id=q, queue_offset=off, max_messages=512,
                    long_poll_ms=0), timeout=10)
                if r.status != broker_pb2.PULL_FOUND or not r.messages:
                    break
                out.extend(m.body for m in r.messages)
                off = r.next_offset
        return out


def error_code(e: grpc.RpcError) -> str:
    try:
        for k, v in e.trailing_metadata() or ():
            if k == ERROR_KEY:
                return v
        return e.code().name
    except Exception:  # noqa: BLE001 - a channel-level error has no metadata
        return "UNAVAILABLE"


# ---- phases -------------------------------------------------------------------------------------

def throughput(client: SetClient, n: int, seconds: float, batch: int, in_flight: int, body_size: int,
               sampler: Any = None, acked: set[bytes] | None = None, tag: str = "tp") -> dict[str, float]:
    """Sync-acknowledged msgs/s with `in_flight` threads each sending batches of `batch` (numbered
    bodies; the acknowledged ones are added to `acked`)."""
    counter = itertools.count()
    sent = [0]
    errs = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    t0 = time.perf_counter()

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= n:
                    return
                sent[0] += batch
            bodies = [f"{tag}-{next(counter):09d}".encode().ljust(body_size, b".") for _ in range(batch)]
            try:
                client.send(bodies, timeout=10)
                if acked is not None:
                    with lock:
                        acked.update(bodies)
            except grpc.RpcError:
                with lock:
                    errs[0] += 1
                    sent[0] -= batch
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(in_flight)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if sampler is not None:
            sampler()
        time.sleep(0.2)
    elapsed = time.perf_counter() - t0
    return {"msgs": sent[0], "seconds": elapsed, "msgs_per_s": sent[0] / elapsed, "errors": errs[0]}


def run(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="orbitmq-ha-bench-"))
    cluster = ha_cluster(root)
    clients: list[SetClient] = []
    try:
        cluster.start_controllers()
        cluster.start_namesrvs()
        solo = cluster.add_broker("solo", 1)
        reps = [cluster.add_broker("rep", i) for i in (1, 2, 3)]
        for b in [solo, *reps]:
            cluster.start_broker(b.name)
        batch = args.records == "batch"
        c_solo, c_rep = SetClient([solo], batch), SetClient(reps, batch)
        clients += [c_solo, c_rep]
        c_solo.wait_master(60)
        c_rep.wait_master(60)
        c_solo.create_topic()
        c_rep.create_topic()
        # wait until the 3-replica set's sync-state-set holds all three (sends succeed)
        proc.wait_until(lambda: _try_send(c_rep), 60, 0.2, "replicated sends succeed")

        lag = {"max": 0}

        def sample() -> None:
            sts = c_rep.statuses()
            m = c_rep.master
            if m and sts.get(m) is not None:
                top = sts[m].max_physical_offset
                for a, st in sts.items():
                    if a != m and st is not None:
                        lag["max"] = max(lag["max"], top - st.max_physical_offset)

        # the machine is shared and noisy: alternate short slices of the two loads and sum them
        acked: set[bytes] = set()
        tot = {"single": [0.0, 0.0, 0], "replicated": [0.0, 0.0, 0]}
        rounds = max(1, args.rounds)
        for r in range(rounds):
            for kind, client in (("single", c_solo), ("replicated", c_rep)):
                res = throughput(client, args.messages // rounds, args.seconds / rounds, args.batch, args.in_flight,
                                 args.body_size, sampler=sample if kind == "replicated" else None,
                                 acked=acked if kind == "replicated" else None, tag=f"{kind[0]}{r}")
                t = tot[kind]
                t[0] += res["msgs"]
                t[1] += res["seconds"]
                t[2] += int(res["errors"])
        single = {"msgs_per_s": tot["single"][0] / tot["single"][1], "errors": tot["single"][2]}
        replicated = {"msgs_per_s": tot["replicated"][0] / tot["replicated"][1], "errors": tot["replicated"][2]}
        t0 = time.monotonic()
        proc.wait_until(lambda: _caught_up(c_rep), 30, 0.05, "followers caught up")
        catch_up = time.monotonic() - t0

        # failover
        failovers: list[float] = []
        seq = 0
        for _ in range(args.kills):
            for _ in range(20):  # some traffic before the kill
                seq += 1
                body = f"ack-{seq:08d}".encode().ljust(args.body_size, b".")
                try:
                    c_rep.send([body], timeout=5)
                    acked.add(body)
                except grpc.RpcError:
                    pass
            master_addr = c_rep.find_master()
            victim = next(b for b in reps if b.addr == master_addr)
            t_kill = time.monotonic()
            cluster.kill9(victim.name)
            while time.monotonic() - t_kill < 60:
                seq += 1
                body = f"ack-{seq:08d}".encode().ljust(args.body_size, b".")
                try:
                    c_rep.send([body], timeout=3)
                    acked.add(body)
                    failovers.append(time.monotonic() - t_kill)
                    break
                except (grpc.RpcError, RuntimeError):
                    time.sleep(0.05)
            cluster.start_broker(victim.name)
            # it rejoins as a follower and the set is whole again before the next kill
            proc.wait_until(lambda v=victim: (c_rep.status(v.addr) or broker_pb2.BrokerStatus()).role == "FOLLOWER",
                            60, 0.2, "old master rejoined as follower")
            proc.wait_until(lambda: _try_send(c_rep), 60, 0.2, "replicated sends succeed")
            proc.wait_until(lambda: _caught_up(c_rep), 60, 0.1, "followers caught up")
        final = c_rep.wait_master(30)
        found = set(c_rep.read_all(final))
        lost = len(acked - found)
        return {
            "single_msgs_per_s": round(single["msgs_per_s"]),
            "replicated_msgs_per_s": round(replicated["msgs_per_s"]),
            "replicated_vs_single": round(replicated["msgs_per_s"] / max(1.0, single["msgs_per_s"]), 3),
            "lag_bytes_max": lag["max"],
            "catch_up_s": round(catch_up, 3),
            "failover_s": [round(f, 3) for f in failovers],
            "failover_min_s": round(min(failovers), 3) if failovers else None,
            "failover_median_s": round(statistics.median(failovers), 3) if failovers else None,
            "failover_max_s": round(max(failovers), 3) if failovers else None,
            "kills": args.kills,
            "acked_checked": len(acked),
            "lost_acked": lost,
            "batch": args.batch,
            "in_flight": args.in_flight,
            "body_size": args.body_size,
            "records": args.records,
            "single_mb_per_s": round(single["msgs_per_s"] * args.body_size / 1e6, 1),
            "replicated_mb_per_s": round(replicated["msgs_per_s"] * args.body_size / 1e6, 1),
            "send_errors": single["errors"] + replicated["errors"],
        }
    finally:
        for c in clients:
            c.close()
        cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def _try_send(c: SetClient) -> bool:
    try:
        c.send([b"warmup"], timeout=3)
        return True
    except (grpc.RpcError, RuntimeError):
        return False


def _caught_up(c: SetClient) -> bool:
    sts = c.statuses()
    m = c.master or c.find_master()
    if m is None or sts.get(m) is None:
        return False
    top = sts[m].max_physical_offset
    return all(st is not None and st.max_physical_offset >= top for st in sts.values())
