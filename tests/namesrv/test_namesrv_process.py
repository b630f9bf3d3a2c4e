"""A real `orbitmq namesrv` process over gRPC: registration, keep-alive streams, fencing, errors."""

from __future__ import annotations

import queue

import grpc
import pytest

from orbitmq.common import net
from orbitmq.common.proc import wait_until
from orbitmq.protos import common_pb2, namesrv_pb2, namesrv_pb2_grpc

pytestmark = pytest.mark.process


@pytest.fixture
def ns(procs):
    addr = f"127.0.0.1:{net.free_port()}"
    procs.start("namesrv", ["namesrv", "--listen", addr, "--expire-after-s", "60"])
    net.wait_for_port(addr, 30)
    with grpc.insecure_channel(addr) as ch:
        yield namesrv_pb2_grpc.NameServerStub(ch)


def ident(bid: int = 0, inst: str = "i1") -> namesrv_pb2.BrokerIdentity:
    return namesrv_pb2.BrokerIdentity(cluster="c", broker_set="bs", broker_id=bid,
                                      address=f"127.0.0.1:{4000 + bid}", instance_id=inst)


def register(stub, bid: int = 0, master: bool = True, epoch: int = 1, inst: str = "i1"):
    return stub.RegisterBroker(namesrv_pb2.RegisterBrokerRequest(
        broker=ident(bid, inst), is_master=master, epoch=epoch, writable=True, ha_address=f"127.0.0.1:{5000 + bid}",
        topics=[common_pb2.TopicConfig(topic="T", read_queues=2, write_queues=2, perm=6)]), timeout=5)


def replicas(stub) -> dict[int, str]:
    try:
        r = stub.GetTopicRoute(namesrv_pb2.GetTopicRouteRequest(topic="T"), timeout=5)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
        assert dict(e.trailing_metadata())["orbitmq-error"] == "TOPIC_NOT_FOUND"
        return {}
    return dict(r.broker_sets[0].replicas)


class Stream:
    """A KeepAlive stream driven from the test."""

    def __init__(self, stub, identity) -> None:
        self.q: queue.Queue = queue.Queue()
        self.identity = identity
        self.call = stub.KeepAlive(iter(self.q.get, None))

    def ping(self) -> namesrv_pb2.KeepAlivePong:
        self.q.put(namesrv_pb2.KeepAlivePing(broker=self.identity))
        return next(self.call)

    def close(self) -> None:
        self.call.cancel()

    def finish(self) -> None:
        """End the stream from this side and wait until the server has ended it too (so it has
        already handled the stream's end when this returns)."""
        self.q.put(None)
        for _ in self.call:
            pass


def test_register_answers_master_and_stale_master_is_fenced(ns):
    r = register(ns, 0, epoch=3)
    assert (r.master_id, r.master_address, r.master_ha_address) == (0, "127.0.0.1:4000", "127.0.0.1:5000")
    r = register(ns, 1, master=False, epoch=3)
    assert r.master_address == "127.0.0.1:4000"
    with pytest.raises(grpc.RpcError) as ei:
        register(ns, 2, epoch=2)
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(ei.value.trailing_metadata())["orbitmq-error"] == "STALE_EPOCH"
    assert replicas(ns) == {0: "127.0.0.1:4000", 1: "127.0.0.1:4001"}
    with pytest.raises(grpc.RpcError):
        ns.RegisterBroker(namesrv_pb2.RegisterBrokerRequest(), timeout=5)  # no identity: BAD_REQUEST


def test_keepalive_break_drops_entry_at_once_unregister_too(ns):
    s = Stream(ns, ident(0))
    assert s.ping().register_needed  # not registered yet: asked to register
    register(ns, 0)
    assert not s.ping().register_needed
    register(ns, 1, master=False)
    s.close()
    wait_until(lambda: set(replicas(ns)) == {1}, 5, what="entry of the broken stream dropped")
    ns.UnregisterBroker(namesrv_pb2.UnregisterBrokerRequest(broker=ident(1)), timeout=5)
    assert replicas(ns) == {}


def test_old_instance_stream_break_keeps_restarted_broker(ns):
    register(ns, 0, inst="old")
    s = Stream(ns, ident(0, "old"))
    assert not s.ping().register_needed
    register(ns, 0, inst="new")  # the broker restarted before its old connection was seen to break
    s2 = Stream(ns, ident(0, "new"))
    assert not s2.ping().register_needed
    s.finish()   # returns once the server has handled the old stream's end
    assert replicas(ns) == {0: "127.0.0.1:4000"}
    s2.close()


def test_delta_registration_needs_a_base_and_patches_topics(ns):
    def delta(inst: str, put: list[str], deleted: list[str]):
        return ns.RegisterBroker(namesrv_pb2.RegisterBrokerRequest(
            broker=ident(0, inst), is_master=True, epoch=1, writable=True, topics_delta=True, deleted_topics=deleted,
            topics=[common_pb2.TopicConfig(topic=t, read_queues=3, write_queues=3, perm=6) for t in put]), timeout=5)

    def topics() -> list[str]:
        return list(ns.GetTopicList(namesrv_pb2.GetTopicListRequest(cluster="c"), timeout=5).topics)

    assert delta("i1", ["U"], []).full_registration_needed   # no base: nothing applied
    assert topics() == []
    register(ns)                                              # full: T
    r = delta("i1", ["U", "V"], [])
    assert not r.full_registration_needed and r.master_id == 0
    assert topics() == ["T", "U", "V"]
    assert not delta("i1", [], ["T", "V"]).full_registration_needed
    assert topics() == ["U"]
    assert delta("i2", ["W"], []).full_registration_needed   # a restarted instance must send everything
    assert topics() == ["U"]
