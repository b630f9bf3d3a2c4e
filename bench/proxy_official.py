"""Worker of `orbitmq bench proxy`: the official RocketMQ 5 Python client against a proxy endpoint.

Run as its own process (the official client's generated protobuf code cannot share a process with
OrbitMQ's `apache.rocketmq.v2` modules): sync sends of --messages bodies, then SimpleConsumer
receives (batches of 32) with an ack per message, each phase bounded by --seconds. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    a = ap.parse_args()
    logging.getLogger("rocketmq-python-client").setLevel(logging.ERROR)
    from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer

    cfg = ClientConfiguration(a.endpoint, Credentials(), request_timeout=10)
    p = Producer(cfg, (a.topic, a.topic + "C"))
    p.startup()
    body = b"x" * a.size
    for _ in range(20):  # warm-up (not counted, consumed below)
        m = Message()
        m.topic, m.body = a.topic, body
        p.send(m)
    sent = 0
    t0 = time.perf_counter()
    deadline = t0 + a.seconds
    while sent < a.messages and time.perf_counter() < deadline:
        m = Message()
        m.topic, m.body = a.topic, body
        p.send(m)
        sent += 1
    send_dt = time.perf_counter() - t0

    def one() -> None:
        m = Message()
        m.topic, m.body = a.topic + "C", body
        p.send(m)

    from orbitmq.bench.proxy import concurrent_sends

    conc = concurrent_sends(one, a.messages, 8, a.seconds)
    p.shutdown()
    c = SimpleConsumer(cfg, "bench-official", {a.topic: FilterExpression()}, 2)
    c.startup()
    want = sent + 20
    got = 0
    t0 = time.perf_counter()
    deadline = t0 + a.seconds
    while got < want and time.perf_counter() < deadline:
        for m in c.receive(32, 60):
            c.ack(m)
            got += 1
    recv_dt = time.perf_counter() - t0
    c.shutdown()
    out = {"sent": sent, "send_msgs_per_s": round(sent / send_dt), "received": got,
           "receive_msgs_per_s": round(got / recv_dt), "concurrent_send_msgs_per_s": round(conc)}
    out["raw"] = raw_protocol(a, body)
    print(json.dumps(out), flush=True)


def raw_protocol(a: argparse.Namespace, body: bytes) -> dict:
    """The same protocol without the official client's own overhead: sync unary calls on the client's
    generated stubs, receives of 32 with one AckMessage per batch."""
    import uuid

    import grpc
    from rocketmq.grpc_protocol import definition_pb2 as d
    from rocketmq.grpc_protocol import service_pb2 as s
    from rocketmq.grpc_protocol.service_pb2_grpc import MessagingServiceStub

    md = (("x-mq-client-id", f"bench-raw-{uuid.uuid4().hex[:8]}"),)
    topic = d.Resource(name=a.topic + "Raw")
    with grpc.insecure_channel(a.endpoint) as ch:
        stub = MessagingServiceStub(ch)
        stub.QueryRoute(s.QueryRouteRequest(topic=topic), metadata=md, timeout=10)
        sent = 0
        t0 = time.perf_counter()
        deadline = t0 + a.seconds
        while sent < a.messages and time.perf_counter() < deadline:
            m = d.Message(topic=topic, body=body)
            m.system_properties.message_id = uuid.uuid4().hex.upper()
            m.system_properties.message_type = d.NORMAL
            r = stub.SendMessage(s.SendMessageRequest(messages=[m]), metadata=md, timeout=10)
            if r.status.code != d.OK:
                raise SystemExit(f"raw send failed: {r.status}")
            sent += 1
        send_dt = time.perf_counter() - t0
        group = d.Resource(name="bench-raw")
        got = 0
        t0 = time.perf_counter()
        deadline = t0 + a.seconds
        while got < sent and time.perf_counter() < deadline:
            req = s.ReceiveMessageRequest(group=group, message_queue=d.MessageQueue(topic=topic, id=got % 4),
                                          batch_size=32)
            req.invisible_duration.seconds = 60
            req.long_polling_timeout.seconds = 2
            msgs = [r.message for r in stub.ReceiveMessage(req, metadata=md, timeout=30) if r.HasField("message")]
            if msgs:
                stub.AckMessage(s.AckMessageRequest(group=group, topic=topic, entries=[
                    s.AckMessageEntry(message_id=m.system_properties.message_id,
                                      receipt_handle=m.system_properties.receipt_handle) for m in msgs]),
                                metadata=md, timeout=10)
            got += len(msgs)
        recv_dt = time.perf_counter() - t0
    return {"sent": sent, "send_msgs_per_s": round(sent / send_dt), "received": got,
            "receive_msgs_per_s": round(got / recv_dt)}


if __name__ == "__main__":
    main()
