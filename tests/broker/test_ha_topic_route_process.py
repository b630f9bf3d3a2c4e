"""A new topic survives the death of its master in its first seconds (issue 8 #5): followers tell
the name servers about a topic as soon as its META record is dispatched on them (not at their next
30 s registration), so after kill -9 of the master the topic never leaves the routes, and a
producer's send to it succeeds on the new master."""

from __future__ import annotations

import time

import grpc
import pytest

from orbitmq.bench.replication import SetClient, ha_cluster
from orbitmq.client import Message, Producer
from orbitmq.common import proc
from orbitmq.protos import broker_pb2, common_pb2, namesrv_pb2, namesrv_pb2_grpc

pytestmark = pytest.mark.process


def test_new_topic_stays_routed_when_its_master_dies_at_once(tmp_path):
    c = ha_cluster(tmp_path, broker_settings={"register_interval_s": "30"})
    try:
        c.start_controllers()
        c.start_namesrvs()
        reps = [c.add_broker("tp", i) for i in (1, 2, 3)]
        for b in reps:
            c.start_broker(b.name)
        client = SetClient(reps)
        m = client.wait_master(60)
        sss = lambda a: dict((client.status(a) or broker_pb2.BrokerStatus()).stats).get("ha_sss")  # noqa: E731
        proc.wait_until(lambda: sss(m) == "1,2,3", 60, 0.2, "sync-state-set of all three")
        followers = [b for b in reps if b.addr != m]
        def regs(b) -> int:
            st = client.status(b.addr, timeout=10)
            return int(dict(st.stats)["registrations"]) if st is not None else -1

        def all_regs() -> dict[str, int] | None:
            d = {b.name: regs(b) for b in followers}
            return d if min(d.values()) >= 0 else None
        before = proc.wait_until(all_regs, 30, 0.2, "followers' registration counts")
        client.stubs[m].CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
            topic="Fresh", read_queues=2, write_queues=2, perm=6)), timeout=10)
        # every follower registers again once it holds the topic, long before its 30 s period
        proc.wait_until(lambda: all(regs(b) > before[b.name] for b in followers), 10, 0.1,
                        "followers announced the new topic")
        ns = namesrv_pb2_grpc.NameServerStub(grpc.insecure_channel(c.namesrv_addrs[0]))
        with Producer(c.namesrv_addrs, send_timeout_s=5.0) as p:
            assert p.send(Message("Fresh", b"before")).broker_set == "tp"
            c.kill9(next(b.name for b in reps if b.addr == m))
            t_kill = time.monotonic()
            missing = 0
            while time.monotonic() - t_kill < 3.0:  # the topic stays in the routes throughout
                try:
                    ns.GetTopicRoute(namesrv_pb2.GetTopicRouteRequest(topic="Fresh"), timeout=2)
                except grpc.RpcError:
                    missing += 1
                time.sleep(0.05)
            assert missing == 0, f"topic missing from the routes {missing} times after its master died"
            r = p.send(Message("Fresh", b"after"))
            new = client.find_master()
            assert new != m and r.broker_set == "tp"
            st = client.stubs[new].GetOffsetRange(broker_pb2.GetOffsetRangeRequest(topic="Fresh", queue_id=r.queue_id),
                                                  timeout=5)
            assert st.max_offset == r.queue_offset + 1
        client.close()
    except BaseException:
        print(c.logs(30))
        raise
    finally:
        c.stop()
