"""Bad input through the protocol gets the right Status code, and the proxy keeps serving.

Requests are built with the official client's generated stubs (`rocketmq.grpc_protocol`), so
they are exactly what any RocketMQ 5 client puts on the wire.
"""

from __future__ import annotations

import base64
import json

import grpc
import pytest

pytestmark = pytest.mark.process


@pytest.fixture
def wire(start_proxy):
    pb = pytest.importorskip("rocketmq.grpc_protocol.service_pb2")
    dpb = pytest.importorskip("rocketmq.grpc_protocol.definition_pb2")
    from rocketmq.grpc_protocol.service_pb2_grpc import MessagingServiceStub

    px = start_proxy("--set", "max_message_size=1024", "--set", "auto_create_topics=false")
    ch = grpc.insecure_channel(px.addr)
    stub = MessagingServiceStub(ch)
    md = (("x-mq-client-id", "test-client"), ("x-mq-language", "PYTHON"))

    class W:
        s, d = pb, dpb

        def call(self, method: str, req, metadata=md):
            return getattr(stub, method)(req, metadata=metadata, timeout=30)

        def code(self, resp) -> str:
            return dpb.Code.Name(resp.status.code)

        def msg(self, topic: str, body: bytes, **sp):
            m = dpb.Message(topic=dpb.Resource(name=topic), body=body)
            m.system_properties.message_id = "0102AB"
            m.system_properties.message_type = sp.pop("message_type", dpb.NORMAL)
            for k, v in sp.items():
                setattr(m.system_properties, k, v)
            return m

        def receive(self, req):
            return list(stub.ReceiveMessage(req, metadata=md, timeout=30))

    yield W()
    ch.close()


def test_unknown_and_illegal_topics(wire):
    s, d = wire.s, wire.d
    r = wire.call("QueryRoute", s.QueryRouteRequest(topic=d.Resource(name="nope")))
    assert wire.code(r) == "TOPIC_NOT_FOUND" and "nope" in r.status.message
    r = wire.call("QueryRoute", s.QueryRouteRequest(topic=d.Resource(name="bad topic!")))
    assert wire.code(r) == "ILLEGAL_TOPIC"
    r = wire.call("SendMessage", s.SendMessageRequest(messages=[wire.msg("nope", b"x")]))
    assert wire.code(r) == "TOPIC_NOT_FOUND" and wire.d.Code.Name(r.entries[0].status.code) == "TOPIC_NOT_FOUND"


def test_missing_client_id(wire):
    s, d = wire.s, wire.d
    r = wire.call("QueryRoute", s.QueryRouteRequest(topic=d.Resource(name="x")), metadata=())
    assert wire.code(r) == "CLIENT_ID_REQUIRED"
    r = wire.call("Heartbeat", s.HeartbeatRequest(client_type=d.PRODUCER), metadata=())
    assert wire.code(r) == "CLIENT_ID_REQUIRED"


def test_send_without_messages_or_to_an_illegal_topic(wire):
    s = wire.s
    assert wire.code(wire.call("SendMessage", s.SendMessageRequest(messages=[wire.msg("bad topic!", b"x")]))) \
        == "ILLEGAL_TOPIC"
    assert wire.code(wire.call("SendMessage", s.SendMessageRequest())) == "BAD_REQUEST"


def test_send_checks_on_an_existing_topic(start_proxy):
    pytest.importorskip("rocketmq.grpc_protocol.service_pb2")
    from rocketmq.grpc_protocol import definition_pb2 as d
    from rocketmq.grpc_protocol import service_pb2 as s
    from rocketmq.grpc_protocol.service_pb2_grpc import MessagingServiceStub

    px = start_proxy("--auto-create-topics", "--set", "max_message_size=1024")
    md = (("x-mq-client-id", "c1"),)
    with grpc.insecure_channel(px.addr) as ch:
        stub = MessagingServiceStub(ch)

        def send(body: bytes, **sp) -> str:
            m = d.Message(topic=d.Resource(name="t"), body=body)
            m.system_properties.message_id = "0102AB"
            m.system_properties.message_type = sp.pop("message_type", d.NORMAL)
            for k, v in sp.pop("user", {}).items():
                m.user_properties[k] = v
            for k, v in sp.items():
                if k == "body_digest":
                    m.system_properties.body_digest.CopyFrom(v)
                else:
                    setattr(m.system_properties, k, v)
            return d.Code.Name(stub.SendMessage(s.SendMessageRequest(messages=[m]), metadata=md, timeout=30).status.code)

        assert send(b"ok") == "OK"
        assert send(b"") == "MESSAGE_BODY_EMPTY"
        assert send(b"x" * 1025) == "MESSAGE_BODY_TOO_LARGE"
        assert send(b"x", message_type=d.FIFO) == "MESSAGE_PROPERTY_CONFLICT_WITH_TYPE"
        assert send(b"x", message_type=d.DELAY) == "MESSAGE_PROPERTY_CONFLICT_WITH_TYPE"
        assert send(b"x", message_group="g") == "MESSAGE_PROPERTY_CONFLICT_WITH_TYPE"
        assert send(b"x", tag="a|b\x01") == "ILLEGAL_MESSAGE_TAG"
        assert send(b"x", user={"__SHARDINGKEY": "v"}) == "ILLEGAL_MESSAGE_PROPERTY_KEY"
        assert send(b"x", body_digest=d.Digest(type=d.CRC32, checksum="00000000")) == "MESSAGE_CORRUPTED"
        assert send(b"x", body_digest=d.Digest(type=d.CRC32, checksum="8CDC1683")) == "OK"
        assert send(b"x", message_id="not an id!") == "ILLEGAL_MESSAGE_ID"

        g = d.Resource(name="g")
        t = d.Resource(name="t")
        forged = base64.urlsafe_b64encode(json.dumps([1, "local", "t", 0, 0, 999]).encode()).decode()
        for handle in ("garbage", forged, ""):
            r = stub.AckMessage(s.AckMessageRequest(group=g, topic=t, entries=[
                s.AckMessageEntry(message_id="0102AB", receipt_handle=handle)]), metadata=md, timeout=30)
            assert d.Code.Name(r.status.code) == "INVALID_RECEIPT_HANDLE"
            assert d.Code.Name(r.entries[0].status.code) == "INVALID_RECEIPT_HANDLE"
            r = stub.ChangeInvisibleDuration(s.ChangeInvisibleDurationRequest(
                group=g, topic=t, receipt_handle=handle, message_id="0102AB"), metadata=md, timeout=30)
            assert d.Code.Name(r.status.code) == "INVALID_RECEIPT_HANDLE"
        r = stub.AckMessage(s.AckMessageRequest(topic=t, entries=[s.AckMessageEntry(receipt_handle=forged)]),
                            metadata=md, timeout=30)
        assert d.Code.Name(r.status.code) == "ILLEGAL_CONSUMER_GROUP"

        def receive(**kw) -> str:
            req = s.ReceiveMessageRequest(group=g, message_queue=d.MessageQueue(topic=t, id=0), batch_size=1, **kw)
            out = list(stub.ReceiveMessage(req, metadata=md, timeout=30))
            return d.Code.Name(out[0].status.code)

        assert receive(filter_expression=d.FilterExpression(type=d.SQL, expression="a > 1")) == \
            "ILLEGAL_FILTER_EXPRESSION"
        from google.protobuf.duration_pb2 import Duration
        assert receive(invisible_duration=Duration(seconds=0, nanos=1000)) == "ILLEGAL_INVISIBLE_TIME"
        assert receive(invisible_duration=Duration(seconds=5)) == "OK"  # the "ok" message of above
        assert d.Code.Name(list(stub.ReceiveMessage(s.ReceiveMessageRequest(
            message_queue=d.MessageQueue(topic=t)), metadata=md, timeout=30))[0].status.code) == "ILLEGAL_CONSUMER_GROUP"
        # still serving
        assert send(b"after") == "OK"


def test_garbage_requests_never_crash_the_proxy(start_proxy):
    """Random bytes (and random valid-looking protobuf fields) to every unary RPC and the receive stream:
    answers or gRPC errors, and the proxy keeps serving."""
    import random

    pytest.importorskip("rocketmq.grpc_protocol")
    from rocketmq.grpc_protocol import definition_pb2 as d
    from rocketmq.grpc_protocol import service_pb2 as s
    from rocketmq.grpc_protocol.service_pb2_grpc import MessagingServiceStub

    px = start_proxy("--auto-create-topics")
    rnd = random.Random(11)
    md = (("x-mq-client-id", "fuzz"),)
    unary = ["QueryRoute", "Heartbeat", "SendMessage", "QueryAssignment", "AckMessage", "EndTransaction",
             "ForwardMessageToDeadLetterQueue", "NotifyClientTermination", "ChangeInvisibleDuration"]

    def field(tag: int, wire: int, payload: bytes) -> bytes:
        key = (tag << 3) | wire
        return bytes([key]) + (bytes([len(payload)]) + payload if wire == 2 else payload)

    with grpc.insecure_channel(px.addr) as ch:
        for i in range(300):
            method = rnd.choice(unary + ["ReceiveMessage"])
            if i % 2:
                body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 64)))
            else:  # structurally valid: random small fields, nested messages of random bytes
                body = b"".join(field(rnd.randint(1, 8), 2, bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 20))))
                                for _ in range(rnd.randint(1, 4)))
            path = f"/apache.rocketmq.v2.MessagingService/{method}"
            try:
                if method == "ReceiveMessage":
                    list(ch.unary_stream(path)(body, metadata=md, timeout=15))
                else:
                    ch.unary_unary(path)(body, metadata=md, timeout=15)
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT,
                                    grpc.StatusCode.UNKNOWN), (method, e)
        stub = MessagingServiceStub(ch)
        r = stub.QueryRoute(s.QueryRouteRequest(topic=d.Resource(name="after-fuzz")), metadata=md, timeout=30)
        assert r.status.code == d.OK and len(r.message_queues) == 4
    log = px.child.log_tail(100_000)  # grpcio logs its own undecodable requests; none of ours failed
    assert "ERROR proxy orbitmq" not in log and "INTERNAL_ERROR" not in log, log[-5000:]
