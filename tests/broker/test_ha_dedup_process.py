"""Producer retries on real processes (issue 8 #2): a retried send is stored once and answered
with the original receipts — after REPLICATION_TIMEOUT on the same master, and on the new master
after kill -9 of the old one — and a master that knows its sync-state-set is too small refuses
before writing (IN_SYNC_REPLICAS_NOT_ENOUGH, `orbitmq-stored: 0`, its log unchanged)."""

from __future__ import annotations

import collections

import grpc
import pytest

from orbitmq.bench.replication import TOPIC, SetClient, error_code, ha_cluster
from orbitmq.common import proc
from orbitmq.protos import broker_pb2, common_pb2

pytestmark = pytest.mark.process


def request(tag: str, n: int, queue_id: int) -> broker_pb2.SendRequest:
    return broker_pb2.SendRequest(topic=TOPIC, queue_id=queue_id, messages=[
        common_pb2.Message(topic=TOPIC, body=f"{tag}-{i}".encode(), msg_id=f"{tag.upper()}{i:020X}")
        for i in range(n)])


def receipts(resp: broker_pb2.SendResponse) -> list[tuple]:
    return [(r.msg_id, r.queue_id, r.queue_offset, r.physical_offset) for r in resp.results]


def test_retries_stored_once_and_refusals_before_writing(tmp_path):
    c = ha_cluster(tmp_path, broker_settings={"ha_max_lag_s": "2.0", "ha_ack_timeout_s": "2.0"})
    try:
        c.start_controllers()
        c.start_namesrvs()
        reps = [c.add_broker("dd", i) for i in (1, 2, 3)]
        for b in reps:
            c.start_broker(b.name)
        client = SetClient(reps)
        m = client.wait_master(60)
        client.create_topic()
        sss = lambda addr: dict((client.status(addr) or broker_pb2.BrokerStatus()).stats).get("ha_sss")  # noqa: E731
        proc.wait_until(lambda: sss(m) == "1,2,3", 60, 0.2, "sync-state-set of all three")
        stub = lambda: client.stubs[client.find_master()]  # noqa: E731

        # 1. the same request twice: one copy, the same receipts
        req = request("once", 3, 1)
        # (a loaded machine may time a replication out: the retry of the same ids is the thing tested)
        first = proc.wait_until(lambda: _try(stub(), req), 90, 0.2, "the first send acknowledged")
        end = client.status(m).max_physical_offset
        assert receipts(stub().SendMessage(req, timeout=10)) == receipts(first)
        assert client.status(m).max_physical_offset == end

        # 2. REPLICATION_TIMEOUT (followers frozen): stored unconfirmed; the retry after they come
        # back is answered with the original receipts once replicated, not stored again
        followers = [b for b in reps if b.addr != m]
        slow = request("slow", 2, 2)
        for f in followers:
            f.child.pause()
        try:
            with pytest.raises(grpc.RpcError) as ei:
                client.stubs[m].SendMessage(slow, timeout=10)
            assert error_code(ei.value) in ("REPLICATION_TIMEOUT", "IN_SYNC_REPLICAS_NOT_ENOUGH")
        finally:
            for f in followers:
                f.child.resume()
        proc.wait_until(lambda: sss(m) == "1,2,3", 60, 0.2, "followers back in the set")
        slow_first = proc.wait_until(lambda: _try(client.stubs[m], slow), 90, 0.2, "the slow send's retry answered")

        # 3. kill -9 of the master after an acknowledged send: the retry on the new master finds it
        acked = request("fail", 4, 3)
        acked_first = proc.wait_until(lambda: _try(client.stubs[m], acked), 90, 0.2, "the send acknowledged")
        old = next(b for b in reps if b.addr == m)
        c.kill9(old.name)
        new = proc.wait_until(lambda: (a := client.find_master()) not in (None, m) and a, 90, 0.1, "a new master")
        got = proc.wait_until(lambda: _try(client.stubs[new], acked), 90, 0.2, "retry accepted by the new master")
        assert receipts(got) == receipts(acked_first)
        assert receipts(client.stubs[new].SendMessage(slow, timeout=10)) == receipts(slow_first)

        # 4. the new master's set shrinks to itself (the other follower frozen): it refuses before
        # writing, says so, and its log does not grow
        other = next(b for b in reps if b.addr not in (m, new))
        other.child.pause()
        try:
            proc.wait_until(lambda: sss(new) == str(next(b.broker_id for b in reps if b.addr == new)), 90, 0.2,
                            "sync-state-set shrank to the master alone")
            # (the published set may lead the master's own view by an alter round trip: probe first)
            probe = iter(range(1000))
            proc.wait_until(lambda: _refused_unstored(client.stubs[new], request(f"probe{next(probe)}", 1, 0)),
                            90, 0.2, "a refusal before writing")
            before = client.status(new).max_physical_offset
            refused = request("refused", 2, 0)
            assert _refused_unstored(client.stubs[new], refused)
            assert client.status(new).max_physical_offset == before
        finally:
            other.child.resume()
        proc.wait_until(lambda: _try(client.stubs[new], request("after", 1, 0)), 60, 0.2, "sends accepted again")

        counts = collections.Counter(client.read_all(new))
        for tag, n in (("once", 3), ("slow", 2), ("fail", 4)):
            for i in range(n):
                assert counts[f"{tag}-{i}".encode()] == 1, f"{tag}-{i} stored {counts[f'{tag}-{i}'.encode()]} times"
        assert counts[b"refused-0"] == 0
        client.close()
    except BaseException:
        print(c.logs(40))
        raise
    finally:
        c.stop()


def _try(stub, req: broker_pb2.SendRequest) -> broker_pb2.SendResponse | None:
    try:
        return stub.SendMessage(req, timeout=5)
    except grpc.RpcError:
        return None


def _refused_unstored(stub, req: broker_pb2.SendRequest) -> bool:
    try:
        stub.SendMessage(req, timeout=10)
        return False
    except grpc.RpcError as e:
        md = dict(e.trailing_metadata() or ())
        return md.get("orbitmq-error") == "IN_SYNC_REPLICAS_NOT_ENOUGH" and md.get("orbitmq-stored") == "0"
