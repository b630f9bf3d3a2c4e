"""Worker of `orbitmq bench proxy`: the official RocketMQ 5 Python client against a proxy endpoint.

Runs as its own process (the official client's generated protobuf code cannot share a process with
OrbitMQ's `apache.rocketmq.v2` modules) and obeys one JSON command per stdin line, answering each
with one stdout line `@@{json}`, so the parent can interleave its phases with the direct ones:
  {"op": "start", "endpoint", "topic", "size", "null_endpoint"}  start a Producer (and send a warm-up),
                                                   and one on a do-nothing server (bench/proxy_null.py)
  {"op": "send", "n", "seconds"}                   n sync sends          -> {"n", "secs"}
  {"op": "send_null", "n", "seconds"}              n sync sends to the do-nothing server
  {"op": "concurrent", "n", "threads", "seconds"}  n sync sends from threads sharing the Producer
  {"op": "receive", "want", "seconds"}             SimpleConsumer receives of 32, an ack per message
  {"op": "raw", "n", "seconds"}                    the same protocol on the client's stubs (see raw_protocol)
  {"op": "quit"}
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

WARMUP = 50


class Worker:
    def __init__(self) -> None:
        logging.getLogger("rocketmq-python-client").setLevel(logging.ERROR)
        import rocketmq

        self.rmq = rocketmq
        self.producer: Any = None

    def start(self, endpoint: str, topic: str, size: int, null_endpoint: str) -> dict:
        r = self.rmq
        self.endpoint, self.topic, self.body = endpoint, topic, b"x" * size
        self.cfg = r.ClientConfiguration(endpoint, r.Credentials(), request_timeout=10)
        self.producer = r.Producer(self.cfg, (topic, topic + "C"))
        self.producer.startup()
        self.null = r.Producer(r.ClientConfiguration(null_endpoint, r.Credentials(), request_timeout=10), (topic,))
        self.null.startup()
        for _ in range(WARMUP):  # not counted; consumed by the receive phase
            self._send(topic)
            self._send(topic + "C")
            self._send(topic, self.null)
        return {"warmup": WARMUP}

    def _send(self, topic: str, producer: Any = None) -> None:
        m = self.rmq.Message()
        m.topic, m.body = topic, self.body
        (producer or self.producer).send(m)

    def send_null(self, n: int, seconds: float) -> dict:
        done = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while done < n and time.perf_counter() < deadline:
            self._send(self.topic, self.null)
            done += 1
        return {"n": done, "secs": time.perf_counter() - t0}

    def send(self, n: int, seconds: float) -> dict:
        done = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while done < n and time.perf_counter() < deadline:
            self._send(self.topic)
            done += 1
        return {"n": done, "secs": time.perf_counter() - t0}

    def concurrent(self, n: int, threads: int, seconds: float) -> dict:
        from orbitmq.bench.proxy import concurrent_sends

        done, secs = concurrent_sends(lambda: self._send(self.topic + "C"), n, threads, seconds)
        return {"n": done, "secs": secs}

    def receive(self, want: int, seconds: float) -> dict:
        r = self.rmq
        self.producer.shutdown()
        self.null.shutdown()
        c = r.SimpleConsumer(self.cfg, "bench-official", {self.topic: r.FilterExpression()}, 2)
        c.startup()
        got = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        try:
            while got < want and time.perf_counter() < deadline:
                for m in c.receive(32, 60):
                    c.ack(m)
                    got += 1
        finally:
            secs = time.perf_counter() - t0
            c.shutdown()
        return {"n": got, "secs": secs}


def raw_protocol(endpoint: str, topic_name: str, size: int, n: int, seconds: float) -> dict:
    """The same protocol without the official client's own overhead: sync unary calls on the client's
    generated stubs, receives of 32 with one AckMessage per batch."""
    import uuid

    import grpc
    from rocketmq.grpc_protocol import definition_pb2 as d
    from rocketmq.grpc_protocol import service_pb2 as s
    from rocketmq.grpc_protocol.service_pb2_grpc import MessagingServiceStub

    body = b"x" * size
    md = (("x-mq-client-id", f"bench-raw-{uuid.uuid4().hex[:8]}"),)
    topic = d.Resource(name=topic_name)
    with grpc.insecure_channel(endpoint) as ch:
        stub = MessagingServiceStub(ch)
        stub.QueryRoute(s.QueryRouteRequest(topic=topic), metadata=md, timeout=10)

        def one() -> None:
            m = d.Message(topic=topic, body=body)
            m.system_properties.message_id = uuid.uuid4().hex.upper()
            m.system_properties.message_type = d.NORMAL
            r = stub.SendMessage(s.SendMessageRequest(messages=[m]), metadata=md, timeout=10)
            if r.status.code != d.OK:
                raise SystemExit(f"raw send failed: {r.status}")

        for _ in range(WARMUP):
            one()
        sent = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while sent < n and time.perf_counter() < deadline:
            one()
            sent += 1
        send_dt = time.perf_counter() - t0
        group = d.Resource(name="bench-raw")
        got = 0
        want = sent + WARMUP
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while got < want and time.perf_counter() < deadline:
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
    return {"sent": sent, "send_msgs_per_s": round(sent / send_dt), "received": got, "expected": want,
            "receive_msgs_per_s": round(got / recv_dt)}


def main() -> None:
    w = Worker()
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            break
        if op == "raw":
            out = raw_protocol(w.endpoint, w.topic + "Raw", len(w.body), cmd["n"], cmd["seconds"])
        else:
            out = getattr(w, op)(**cmd)
        print("@@" + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
