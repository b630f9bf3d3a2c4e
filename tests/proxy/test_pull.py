"""The pull and offset RPCs (what RocketMQ 5's PullConsumer uses) through `orbitmq proxy`, local and
cluster mode, with requests built on the official client's generated stubs."""

from __future__ import annotations

import grpc
import pytest

from orbitmq.common import net
from tests.e2e.conftest import Cluster

pytestmark = pytest.mark.process


def scenario(addr: str, topic: str, broker: str) -> None:
    pytest.importorskip("rocketmq.grpc_protocol")
    from rocketmq.grpc_protocol import definition_pb2 as d
    from rocketmq.grpc_protocol import service_pb2 as s
    from rocketmq.grpc_protocol.service_pb2_grpc import MessagingServiceStub

    md = (("x-mq-client-id", "puller"),)
    with grpc.insecure_channel(addr) as ch:
        stub = MessagingServiceStub(ch)
        t = d.Resource(name=topic)
        route = stub.QueryRoute(s.QueryRouteRequest(topic=t), metadata=md, timeout=30)
        assert route.status.code == d.OK
        mq = next(q for q in route.message_queues if q.id == 0 and (not broker or q.broker.name == broker))
        # find how many land on queue 0: send until queue 0 holds 3
        end0 = 0
        for i in range(40):
            m = d.Message(topic=t, body=f"p{i}".encode())
            m.system_properties.message_id = f"0A{i:04d}"
            m.system_properties.message_type = d.NORMAL
            m.system_properties.tag = "even" if i % 2 == 0 else "odd"
            assert stub.SendMessage(s.SendMessageRequest(messages=[m]), metadata=md, timeout=30).status.code == d.OK
            end0 = stub.QueryOffset(s.QueryOffsetRequest(message_queue=mq, query_offset_policy=d.END),
                                    metadata=md, timeout=30).offset
            if end0 >= 3:
                break
        assert end0 >= 3
        begin = stub.QueryOffset(s.QueryOffsetRequest(message_queue=mq, query_offset_policy=d.BEGINNING),
                                 metadata=md, timeout=30)
        assert begin.status.code == d.OK and begin.offset == 0
        ts = stub.QueryOffset(s.QueryOffsetRequest(message_queue=mq, query_offset_policy=d.TIMESTAMP),
                              metadata=md, timeout=30)
        assert d.Code.Name(ts.status.code) == "UNSUPPORTED"

        def pull(offset: int, **kw):
            req = s.PullMessageRequest(group=d.Resource(name="pull-g"), message_queue=mq, offset=offset, batch_size=16,
                                       **kw)
            out = list(stub.PullMessage(req, metadata=md, timeout=30))
            return out[0].status, [r.message for r in out if r.HasField("message")], out[-1].next_offset

        st, msgs, nxt = pull(0)
        assert st.code == d.OK and len(msgs) == end0 and nxt == end0
        assert [m.system_properties.queue_offset for m in msgs] == list(range(end0))
        st, msgs, nxt = pull(end0)  # nothing new (no long polling asked)
        assert d.Code.Name(st.code) == "MESSAGE_NOT_FOUND" and msgs == [] and nxt == end0
        st, _msgs, nxt = pull(end0 + 100)
        assert d.Code.Name(st.code) == "ILLEGAL_OFFSET" and nxt == end0
        g = d.Resource(name="pull-g")
        r = stub.GetOffset(s.GetOffsetRequest(group=g, message_queue=mq), metadata=md, timeout=30)
        assert d.Code.Name(r.status.code) == "OFFSET_NOT_FOUND"
        assert stub.UpdateOffset(s.UpdateOffsetRequest(group=g, message_queue=mq, offset=2), metadata=md,
                                 timeout=30).status.code == d.OK
        r = stub.GetOffset(s.GetOffsetRequest(group=g, message_queue=mq), metadata=md, timeout=30)
        assert r.status.code == d.OK and r.offset == 2
        r = stub.UpdateOffset(s.UpdateOffsetRequest(group=g, message_queue=mq, offset=-1), metadata=md, timeout=30)
        assert d.Code.Name(r.status.code) == "ILLEGAL_OFFSET"


def test_pull_and_offsets_local(start_proxy):
    scenario(start_proxy("--auto-create-topics").addr, "pulled", "")


def test_pull_and_offsets_cluster(procs, tmp_path):
    c = Cluster(procs, tmp_path)
    c.start_broker("broker-a")
    c.create_topic("pulled", queues=2)
    ep = f"127.0.0.1:{net.free_port()}"
    procs.start("proxy", ["proxy", "--mode", "cluster", "--namesrv", c.namesrv, "--listen", ep])
    net.wait_for_port(ep, 60)
    scenario(ep, "pulled", "broker-a")
