"""Batch records in a replicated set of real processes: followers hold the master's batches byte
for byte and index them (a query on a follower finds a batched message by id, key and offset),
a retried batch is stored once (also on the new master after kill -9 of the old one), and the
restarted old master rejoins with its log a prefix of the new master's."""

from __future__ import annotations

import grpc
import pytest

from orbitmq.bench.replication import TOPIC, SetClient, ha_cluster
from orbitmq.broker.store import batch_record as br
from orbitmq.common import proc
from orbitmq.protos import broker_pb2

pytestmark = pytest.mark.process


def batch_request(tag: str, n: int, queue_id: int, first: int) -> broker_pb2.SendRequest:
    data = br.encode(TOPIC, [f"{tag}-{i}".encode() for i in range(n)], tags=["t"] * n,
                     keys=[[f"{tag}-key"]] * n, id_prefix=tag.upper(), id_first=first)
    return broker_pb2.SendRequest(topic=TOPIC, queue_id=queue_id, batch=data)


def _try(stub, req: broker_pb2.SendRequest) -> broker_pb2.SendResponse | None:
    try:
        return stub.SendMessage(req, timeout=5)
    except grpc.RpcError:
        return None


def _batch(resp: broker_pb2.SendResponse) -> tuple:
    b = resp.batch
    return b.queue_id, b.base_queue_offset, b.count, b.physical_offset, b.first_msg_id


def test_batches_replicate_dedup_across_failover_and_index_on_followers(tmp_path) -> None:
    c = ha_cluster(tmp_path)
    client = None
    try:
        c.start_controllers()
        c.start_namesrvs()
        reps = [c.add_broker("bt", i) for i in (1, 2, 3)]
        for b in reps:
            c.start_broker(b.name)
        client = SetClient(reps)
        m = client.wait_master(60)
        client.create_topic()
        proc.wait_until(lambda: _try(client.stubs[client.find_master()], batch_request("warm", 1, 0, 0)), 60, 0.2,
                        "replicated sends succeed")
        first = client.stubs[m].SendMessage(batch_request("abc", 50, 2, 1000), timeout=10)
        qid, base, count, phys, first_id = _batch(first)
        assert (qid, count, first_id) == (2, 50, br.format_id("ABC", 1000))
        again = client.stubs[m].SendMessage(batch_request("abc", 50, 2, 1000), timeout=10)
        assert _batch(again) == _batch(first)
        # every follower holds the batch and has indexed it (queries answered from its own index)
        for b in reps:
            if b.addr == m:
                continue
            stub = client.stubs[b.addr]

            def found(stub=stub):
                r = stub.QueryMessageById(broker_pb2.QueryByIdRequest(msg_id=br.format_id("ABC", 1037)), timeout=5)
                return r.messages and r.messages[0]
            msg = proc.wait_until(found, 30, 0.2, "the follower indexed the batch")
            assert msg.body == b"abc-37" and msg.queue_offset == base + 37 and msg.physical_offset == phys
            r = stub.QueryMessageByKey(broker_pb2.QueryByKeyRequest(topic=TOPIC, key="abc-key", max_messages=100),
                                       timeout=5)
            assert len(r.messages) == 50
        # kill -9 of the master: the retry of the acknowledged batch is answered from the new master's log
        old = next(b for b in reps if b.addr == m)
        c.kill9(old.name)
        new = proc.wait_until(lambda: (a := client.find_master()) not in (None, m) and a, 30, 0.1, "a new master")
        got = proc.wait_until(lambda: _try(client.stubs[new], batch_request("abc", 50, 2, 1000)), 30, 0.2,
                              "retry accepted by the new master")
        assert _batch(got) == _batch(first)
        end = client.status(new).max_physical_offset
        assert _batch(client.stubs[new].SendMessage(batch_request("abc", 50, 2, 1000), timeout=10)) == _batch(first)
        assert client.status(new).max_physical_offset == end
        nxt = client.stubs[new].SendMessage(batch_request("def", 10, 2, 0), timeout=10)
        assert nxt.batch.base_queue_offset == base + count
        # the old master rejoins as a follower and catches up: its log is a prefix of the new one's
        c.start_broker(old.name)
        proc.wait_until(lambda: (client.status(old.addr) or broker_pb2.BrokerStatus()).role == "FOLLOWER", 60, 0.2,
                        "old master rejoined as follower")
        top = client.status(new).max_physical_offset
        proc.wait_until(lambda: (client.status(old.addr) or broker_pb2.BrokerStatus()).max_physical_offset >= top,
                        60, 0.2, "old master caught up")
        bodies = client.read_all(new)
        assert sum(1 for x in bodies if x.startswith(b"abc-")) == 50
        assert sum(1 for x in bodies if x.startswith(b"def-")) == 10
    finally:
        if client is not None:
            client.close()
        c.stop()
