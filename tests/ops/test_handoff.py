"""Graceful master handoff on real processes (issue 13): under steady sync sends through the
client library (one every 5 ms, and a bounded tight loop), `orbitmq admin controller elect`
and SIGTERM on the master hand mastership to a caught-up replica: no send fails, nothing
acknowledged is lost, and the client follows the new master at once (NOT_MASTER naming it)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import grpc
import pytest

from orbitmq.bench.replication import TOPIC, SetClient
from orbitmq.client import Message, Producer
from orbitmq.common import proc
from orbitmq.common.local_cluster import ClusterSpec, LocalCluster
from orbitmq.protos import broker_pb2

pytestmark = pytest.mark.process

SET = "ho"


def admin(c: LocalCluster, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ORBITMQ_CONTROLLERS": ",".join(c.controller_addrs),
           "ORBITMQ_CLUSTER_SECRET_FILE": c.cluster_secret()}
    return subprocess.run(proc.orbitmq_argv("admin", "controller", *args), env=env, capture_output=True, text=True,
                          timeout=60)


class Sender:
    """Sync sends with unique bodies from one thread: every `period_s` (0: a tight loop), bounded in
    count and time; records what was acknowledged, what failed and the longest gap between acks."""

    def __init__(self, producer: Producer, tag: str, period_s: float, limit_s: float = 240.0,
                 max_sends: int = 200_000) -> None:
        self.producer = producer
        self.tag = tag
        self.period_s = period_s
        self.acked: list[bytes] = []
        self.failed: list[str] = []
        self.max_gap_s = 0.0
        self.gaps: list[tuple[float, float]] = []   # (when it ended, gap) of gaps over 0.2 s
        self.stop = threading.Event()
        self.limit_s = limit_s
        self.max_sends = max_sends
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        last = time.monotonic()
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline and n < self.max_sends:
            n += 1
            body = f"{self.tag}-{n:08d}".encode()
            try:
                self.producer.send(Message(TOPIC, body))
                now = time.monotonic()
                self.max_gap_s = max(self.max_gap_s, now - last)
                if now - last > 0.2:
                    self.gaps.append((now, now - last))
                last = now
                self.acked.append(body)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                self.failed.append(f"{type(e).__name__}: {e}")
            if self.period_s:
                time.sleep(self.period_s)

    def wait_more(self, n: int, timeout: float = 60.0) -> None:
        start = len(self.acked)
        proc.wait_until(lambda: len(self.acked) >= start + n or self.failed, timeout, 0.05, f"{n} more acks")
        assert not self.failed, self.failed[:5]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_handoff_by_admin_elect_and_by_sigterm_fails_no_send(tmp_path):
    spec = ClusterSpec(dir=str(tmp_path / "c"), broker_sets=[SET], replicas=3, learners=0, controllers=3, namesrvs=1,
                       broker_settings={"register_interval_s": "5"})
    c = LocalCluster(spec)
    senders: list[Sender] = []
    producer = None
    try:
        c.start()
        first = c.wait_ready(120)[SET]
        setc = SetClient(list(c.brokers.values()))
        setc.wait_master(60)
        setc.create_topic()
        producer = Producer(c.namesrv_addrs[0], send_timeout_s=3.0)
        producer.send(Message(TOPIC, b"warm-up"))
        steady = Sender(producer, "steady", 0.005)
        senders.append(steady)
        steady.wait_more(50)
        marks: list[tuple[float, str]] = []

        # an unsigned handoff request is refused and changes nothing (the cluster has a secret)
        with pytest.raises(grpc.RpcError) as ei:
            setc.stubs[c.brokers[first].addr].HandOffMaster(broker_pb2.HandOffRequest(broker_id=0), timeout=10)
        assert dict(ei.value.trailing_metadata() or ()).get("orbitmq-error") == "NO_PERMISSION"
        assert c.master_of(SET) == first

        # 1. admin elect: the live master hands off to the named replica
        target = next(b for n, b in c.brokers.items() if n != first)
        marks.append((time.monotonic(), "admin elect"))
        r = admin(c, "elect", SET, "--broker-id", str(target.broker_id))
        assert r.returncode == 0 and "handed off to" in r.stdout, r.stdout + r.stderr
        proc.wait_until(lambda: c.master_of(SET) == target.name, 30, 0.1, "the named replica is master")
        steady.wait_more(100)

        # 2. SIGTERM on the master: it hands off, then stops
        old = c.brokers[c.master_of(SET)]
        proc.wait_until(lambda: len(c.sync_state_set(old.name)) == 3, 60, 0.2, "a full sync-state-set again")
        marks.append((time.monotonic(), "SIGTERM 1"))
        old.child.stop(timeout=30)
        new = proc.wait_until(lambda: c.master_of(SET), 30, 0.1, "a master after the SIGTERM")
        assert new != old.name
        assert "handoff ok=True" in (c.logs_dir / f"{old.name}.log").read_text()
        steady.wait_more(100)

        # 3. the stopped one comes back; SIGTERM again while a second thread sends in a tight loop
        old.child = c._start(old.name, c.broker_args(old))
        proc.wait_until(lambda: len(c.sync_state_set(c.master_of(SET) or old.name)) == 3, 90, 0.2,
                        "the restarted replica back in the sync-state-set")
        tight = Sender(producer, "tight", 0.0, limit_s=120, max_sends=50_000)
        senders.append(tight)
        tight.wait_more(200)
        m = c.brokers[c.master_of(SET)]
        marks.append((time.monotonic(), "SIGTERM 2"))
        m.child.stop(timeout=30)
        proc.wait_until(lambda: c.master_of(SET) not in (None, m.name), 30, 0.1, "a master after the second SIGTERM")
        tight.wait_more(200)
        steady.wait_more(50)
        for s in senders:
            s.close()

        for s in senders:
            for at, gap in s.gaps:
                mark = max((m for m in marks if m[0] <= at), default=(at, "start"))
                print(f"{s.tag}: {gap:.3f} s without an ack, ending {at - mark[0]:.3f} s after {mark[1]}")
        failed = [f for s in senders for f in s.failed]
        acked = [b for s in senders for b in s.acked]
        print(f"acked {len(acked)}, failed {len(failed)}, longest gap between acks: steady "
              f"{steady.max_gap_s:.3f} s, tight {tight.max_gap_s:.3f} s")
        assert failed == [], failed[:5]
        # nothing acknowledged is lost: all of it is on the final master
        final = c.master_of(SET)
        assert final is not None
        setc2 = SetClient([c.brokers[final]])
        stored = set(setc2.read_all(c.brokers[final].addr))
        missing = [b for b in acked if b not in stored]
        assert missing == [], missing[:5]
        setc.close()
        setc2.close()
    except BaseException:
        print(c.logs(40))
        raise
    finally:
        for s in senders:
            s.close()
        if producer is not None:
            producer.close()
        c.stop()
