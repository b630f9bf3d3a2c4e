"""Broker send throughput over raw gRPC stubs against a real `orbitmq broker` process.

Measures, one after another on one connection: empty calls/s (a no-op RPC on the same server),
sync single sends/s, and batched sends (msgs/s and MB/s). Every loop is bounded by a count and
a time limit. Prints `send_vs_empty` (target >= 0.5) and `batch_msgs_per_s` (target >= 50,000).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from orbitmq.bench.harness import rate
from orbitmq.common import net, proc
from orbitmq.common.tls_grpc import channel as tls_channel
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=3.0, help="time limit per phase")
    p.add_argument("--count", type=int, default=200_000, help="message/call limit per phase")
    p.add_argument("--batch", type=int, default=256, help="messages per batched send")
    p.add_argument("--body-size", type=int, default=1024, help="body bytes")
    p.add_argument("--flush-mode", default="async", choices=["async", "sync"])
    p.add_argument("--concurrency", type=int, default=2, help="batched sends in flight at once (threads)")
    p.add_argument("--broker", default="", help="use this running broker instead of starting one")


def _concurrent_rate(fn, limit: int, seconds: float, per_call: int, threads: int) -> float:
    """Like _rate with `threads` callers sharing the count and time limits."""
    fn()
    lock = threading.Lock()
    done = [0]
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            with lock:
                if done[0] >= limit:
                    return
                done[0] += per_call
            fn()

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return done[0] / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="orbitmq-bench-"))
    child = None
    try:
        addr = args.broker
        if not addr:
            addr = f"127.0.0.1:{net.free_port()}"
            child = proc.start("broker", proc.orbitmq_argv(
                "broker", "--listen", addr, "--store-dir", str(tmp / "store"),
                "--set", f"flush_mode={args.flush_mode}"), log_path=tmp / "broker.log")
            net.wait_for_port(addr, 30)
        opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
        with tls_channel(addr, False, options=opts) as ch:
            stub = broker_pb2_grpc.BrokerStub(ch)
            topic = "BenchTopic"
            stub.CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
                topic=topic, read_queues=4, write_queues=4, perm=6)), timeout=10)
            empty = broker_pb2.UnregisterConsumerRequest()
            empty_rate = rate(lambda: stub.UnregisterConsumer(empty, timeout=10), args.seconds, args.count)
            body = b"x" * args.body_size
            one = broker_pb2.SendRequest(topic=topic, queue_id=-1,
                                         messages=[common_pb2.Message(topic=topic, body=body, tags="t")])
            send_rate = rate(lambda: stub.SendMessage(one, timeout=10), args.seconds, args.count)
            batch = broker_pb2.SendRequest(topic=topic, queue_id=-1, messages=[
                common_pb2.Message(topic=topic, body=body, tags="t") for _ in range(args.batch)])
            batch_rate = _concurrent_rate(lambda: stub.SendMessage(batch, timeout=30), args.count, args.seconds,
                                          args.batch, max(1, args.concurrency))
        return {
            "empty_calls_per_s": round(empty_rate),
            "sync_sends_per_s": round(send_rate),
            "send_vs_empty": round(send_rate / empty_rate, 3),
            "batch_msgs_per_s": round(batch_rate),
            "batch_mb_per_s": round(batch_rate * args.body_size / 1e6, 1),
            "batch": args.batch,
            "concurrency": args.concurrency,
            "body_size": args.body_size,
            "flush_mode": args.flush_mode,
        }
    finally:
        if child is not None:
            child.stop()
        shutil.rmtree(tmp, ignore_errors=True)
