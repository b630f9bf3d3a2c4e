"""Failover with the framed client: a broker set of 3 serving the framed protocol, a producer sending
one message at a time over it; kill -9 of the master: the producer follows the new master (over its
framed port, found in the routes), and every acknowledged message is on the new master."""

from __future__ import annotations

import collections
import threading
import time

import pytest

from orbitmq.bench.replication import TOPIC, SetClient, ha_cluster
from orbitmq.client import Message, Producer, errors
from orbitmq.common import proc
from orbitmq.protos import broker_pb2

pytestmark = pytest.mark.process


def test_framed_producer_follows_a_killed_master_and_loses_nothing_acknowledged(tmp_path):
    c = ha_cluster(tmp_path, broker_settings={"remoting_listen": "127.0.0.1:0"})
    try:
        c.start_controllers()
        c.start_namesrvs()
        reps = [c.add_broker("fr", i) for i in (1, 2, 3)]
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
                body = f"framed-{seq:06d}".encode()
                try:
                    p.send(Message(TOPIC, body))
                    acked.append(body)
                    ok_at.append(time.monotonic())
                except errors.OrbitError as e:
                    fails[e.code] += 1

        with Producer(c.namesrv_addrs, send_timeout_s=3.0, retries=2) as producer:
            t = threading.Thread(target=run, args=(producer,), daemon=True)
            t.start()
            try:
                proc.wait_until(lambda: len(acked) >= 50, 60, 0.05, "sends flowing")
                old_addr = client.find_master()
                assert producer.transport.remoting(old_addr) is not None, "the master's framed port is not routed"
                assert old_addr not in producer.transport._channels, "sends went over gRPC"
                old = next(b for b in reps if b.addr == old_addr)
                old.child.kill9()
                t_kill = time.monotonic()
                proc.wait_until(lambda: any(x > t_kill + 0.05 for x in ok_at), 60, 0.05,
                                "a successful send after the kill")
                new_addr = proc.wait_until(lambda: (m := client.find_master()) not in (None, old_addr) and m,
                                           60, 0.2, "a new master")
                n = len(acked)
                proc.wait_until(lambda: len(acked) >= n + 50, 60, 0.05, "sends continue at the new master")
                assert producer.transport.remoting(new_addr) is not None
                assert new_addr not in producer.transport._channels, "the producer fell back to gRPC"
            finally:
                stop.set()
                t.join(timeout=30)
        counts = collections.Counter(client.read_all(client.wait_master(30)))
        lost = [b for b in acked if counts[b] == 0]
        print(f"framed failover: acked {len(acked)}, failed {dict(fails)}, lost {len(lost)}")
        assert not lost, f"{len(lost)} acknowledged messages lost: {lost[:5]}"
        client.close()
    except BaseException:
        print(c.logs(30))
        raise
    finally:
        c.stop()
