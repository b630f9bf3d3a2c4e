"""A hung master (SIGSTOP) no longer stalls sync producers for the whole hang (issue 8 #4): the
producer re-reads the route when an attempt goes unanswered, follows the new master while the old
one is still paused, and (with the broker's dedup) stores every acknowledged message exactly once.
An async producer runs alongside: every future resolves within its timeout, none stored twice.
Prints the time from each pause to the first successful send (median/max over the rounds)."""

from __future__ import annotations

import collections
import statistics
import threading
import time
from concurrent.futures import wait

import pytest

from orbitmq.bench.replication import TOPIC, SetClient, ha_cluster
from orbitmq.client import Message, Producer, errors
from orbitmq.common import proc
from orbitmq.protos import broker_pb2

pytestmark = pytest.mark.process

PAUSE_S = 8.0
ROUNDS = 3


def test_sync_sends_follow_the_new_master_while_the_old_one_is_paused(tmp_path):
    c = ha_cluster(tmp_path, broker_settings={"ha_max_lag_s": "2.0"})
    try:
        c.start_controllers()
        c.start_namesrvs()
        reps = [c.add_broker("hang", i) for i in (1, 2, 3)]
        for b in reps:
            c.start_broker(b.name)
        client = SetClient(reps)
        client.wait_master(60)
        client.create_topic()
        sss = lambda a: dict((client.status(a) or broker_pb2.BrokerStatus()).stats).get("ha_sss")  # noqa: E731
        proc.wait_until(lambda: sss(client.find_master()) == "1,2,3", 60, 0.2, "sync-state-set of all three")

        acked: list[bytes] = []
        ok_at: list[float] = []
        fails: collections.Counter = collections.Counter()
        stop = threading.Event()

        def run(p: Producer) -> None:
            seq = 0
            deadline = time.monotonic() + 240
            while not stop.is_set() and time.monotonic() < deadline:
                seq += 1
                body = f"hang-{seq:06d}".encode()
                try:
                    p.send(Message(TOPIC, body))
                    acked.append(body)
                    ok_at.append(time.monotonic())
                except errors.OrbitError as e:
                    fails[e.code] += 1

        async_acked: list[bytes] = []
        async_failed: collections.Counter = collections.Counter()
        unresolved: list[int] = []

        def run_async(p: Producer) -> None:
            """send_async in bursts; every future must resolve within its timeout (+ slack)."""
            seq = 0
            deadline = time.monotonic() + 240
            while not stop.is_set() and time.monotonic() < deadline:
                futs = []
                for _ in range(20):
                    seq += 1
                    body = f"async-{seq:06d}".encode()
                    futs.append((body, time.monotonic(), p.send_async(Message(TOPIC, body))))
                for body, t0, f in futs:
                    done, _ = wait([f], timeout=max(0.0, t0 + 3.0 + 5.0 - time.monotonic()))
                    if not done:
                        unresolved.append(1)
                    elif f.exception() is None:
                        async_acked.append(body)
                    else:
                        async_failed[getattr(f.exception(), "code", "?")] += 1
                time.sleep(0.05)

        recoveries = []
        with Producer(c.namesrv_addrs, send_timeout_s=3.0, retries=2) as producer, \
                Producer(c.namesrv_addrs, send_timeout_s=3.0, retries=2, linger_ms=5) as ap:
            t = threading.Thread(target=run, args=(producer,), daemon=True)
            t.start()
            ta = threading.Thread(target=run_async, args=(ap,), daemon=True)
            ta.start()
            try:
                for _ in range(ROUNDS):
                    proc.wait_until(lambda: len(acked) >= 20, 30, 0.05, "sends flowing")
                    m = client.find_master()
                    old = next(b for b in reps if b.addr == m)
                    old.child.pause()
                    t_pause = time.monotonic()
                    try:
                        first = proc.wait_until(lambda tp=t_pause: next((x for x in ok_at if x > tp + 0.05), None),
                                                PAUSE_S, 0.02, "a successful send while the old master is paused")
                        recoveries.append(first - t_pause)
                    finally:
                        time.sleep(max(0.0, t_pause + PAUSE_S - time.monotonic()))
                        old.child.resume()
                    proc.wait_until(lambda old=old: (client.status(old.addr) or broker_pb2.BrokerStatus()).role
                                    == "FOLLOWER", 60, 0.2, "old master rejoined as follower")
                    proc.wait_until(lambda: sss(client.find_master()) == "1,2,3", 60, 0.2, "set whole again")
                    n = len(acked)
                    proc.wait_until(lambda n=n: len(acked) >= n + 20, 30, 0.05, "sends continue")
            finally:
                stop.set()
                t.join(timeout=20)
                ta.join(timeout=30)
        final = client.wait_master(10)
        counts = collections.Counter(client.read_all(final))
        lost = [b for b in acked + async_acked if counts[b] == 0]
        dups = {b: n for b, n in counts.items() if n > 1}
        print(f"pause->first success: {[f'{r:.2f}' for r in recoveries]} s, median "
              f"{statistics.median(recoveries):.2f} s, max {max(recoveries):.2f} s; sync acked {len(acked)}, "
              f"failed {dict(fails)}; async acked {len(async_acked)}, failed {dict(async_failed)}, unresolved "
              f"{len(unresolved)}; duplicates {len(dups)}, lost {len(lost)}")
        assert not unresolved, f"{len(unresolved)} send_async futures unresolved past their timeout"
        assert not lost, f"{len(lost)} acknowledged messages lost"
        assert not dups, f"{len(dups)} messages stored more than once: {list(dups.items())[:5]}"
        client.close()
    except BaseException:
        print(c.logs(30))
        raise
    finally:
        c.stop()
