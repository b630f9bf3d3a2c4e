"""`orbitmq cluster rolling-restart` on real processes (issue 13): a local cluster made with
`orbitmq cluster up` (3 controllers, 2 name servers, 3 replicas + 1 learner) is restarted process
by process in the safe order while a producer sends with sync acknowledgement: every process is
restarted once (new PIDs), the learner and followers first, the master by handoff, the name
servers, then the controllers with the Raft leader last; the cluster is whole afterwards, no send
failed and no acknowledged message is lost."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from orbitmq.chaos.cluster import ChaosCluster
from orbitmq.chaos.rolling_plan import KINDS
from orbitmq.chaos.workload import read_back
from orbitmq.client import Admin, Message, Producer
from orbitmq.common import proc

pytestmark = pytest.mark.process


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(proc.orbitmq_argv(*args), capture_output=True, text=True, timeout=timeout)


def test_rolling_restart_restarts_every_process_once_in_a_safe_order(tmp_path):
    d = str(tmp_path / "orbit")
    r = cli("cluster", "up", "--dir", d, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    stop = threading.Event()
    acked: list[str] = []
    failed: list[str] = []
    t = None
    c = None
    try:
        c = ChaosCluster.open(d)
        pids = {n: c.pid(n) for n in c.node_names()}
        leader = c.controller_leader()
        ns = ",".join(c.namesrv_addrs)
        with Admin(ns) as admin:
            admin.create_topic("Rolling", queues=4)
        producer = Producer(ns, send_timeout_s=10.0)

        def send() -> None:
            n = 0
            deadline = time.monotonic() + 600
            while not stop.is_set() and time.monotonic() < deadline:
                n += 1
                body = f"r-{n:07d}"
                try:
                    producer.send(Message("Rolling", body.encode()))
                    acked.append(body)
                except Exception as e:  # noqa: BLE001 - counted
                    failed.append(f"{type(e).__name__}: {e}")
                time.sleep(0.01)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        r = cli("cluster", "rolling-restart", "--dir", d, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        report = json.loads(r.stdout.strip().splitlines()[-1])
        steps = report["steps"]
        assert sorted(s["node"] for s in steps) == sorted(pids)               # every process, once
        kinds = [s["kind"] for s in steps]
        assert kinds == sorted(kinds, key=KINDS.index)                        # the safe order
        assert kinds[:1] == ["learner"] and kinds.count("master") == 1
        assert steps[-1]["kind"] == "controller_leader" and steps[-1]["node"] == leader
        assert all(c.pid(n) != pids[n] and c.alive(n) for n in pids)          # new processes
        assert c.ready() and c.controller_leader() is not None
        stop.set()
        t.join(timeout=30)
        producer.close()
        print(f"rolling restart {report['total_s']} s; acked {len(acked)}, failed {len(failed)} {failed[:3]}")
        # nothing acknowledged is lost: a new group reads the topic back
        deliveries, _ = read_back(c.namesrv_addrs, "Rolling", set(acked), 90)
        got = {d.id for d in deliveries}
        missing = [b for b in acked if b not in got]
        assert missing == [], missing[:5]
        assert failed == [], failed[:5]      # no send failed across the whole rolling restart
        assert len(acked) > 100
    finally:
        stop.set()
        if t is not None:
            t.join(timeout=30)
        if c is not None:
            c.detach()
        cli("cluster", "down", "--dir", d, timeout=120)
