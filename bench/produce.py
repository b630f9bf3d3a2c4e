"""Producer throughput and end-to-end latency through the real client against real processes.

Starts a name server, a broker and a gRPC echo helper (each its own process), then measures with
`orbitmq.client.Producer`: sync single sends/s; async sends (batched per queue with a linger) and
explicit `send_batch` (msgs/s, MB/s); end-to-end latency p50/p99 at a fixed rate with a push
consumer in another process; and `grpc_empty_call_per_s`, an empty unary call to the echo process
with the same sync client style, so `send_vs_grpc` = sync sends/s / empty calls/s (target >= 0.5);
and batched produce and pull consume against the one-way gRPC bulk transport measured in the same
run (`produce_vs_transport`, `consume_vs_transport`, see bench/batch_throughput.py).
Every phase is bounded by --messages and --seconds.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time

from orbitmq.bench import batch_throughput
from orbitmq.bench.harness import BenchCluster, grpc_empty_calls_per_s, percentile, rate
from orbitmq.common import proc


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=100_000, help="message limit per throughput phase")
    p.add_argument("--size", type=int, default=1024, help="body bytes")
    p.add_argument("--seconds", type=float, default=4.0, help="time limit per phase")
    p.add_argument("--batch", type=int, default=256, help="messages per batch (async cap and send_batch)")
    p.add_argument("--linger-ms", type=float, default=5.0)
    p.add_argument("--queues", type=int, default=8)
    p.add_argument("--latency-rate", type=int, default=1000, help="msgs/s of the latency phase")
    p.add_argument("--latency-seconds", type=float, default=4.0)
    p.add_argument("--flush-mode", default="async", choices=["async", "sync"])
    p.add_argument("--batch-bytes", type=int, default=256 * 1024,
                   help="bytes of messages per batch record in the batched phases (default 256 KiB)")


def run(args: argparse.Namespace) -> dict:
    from orbitmq.client import Message, Producer

    topic = "BenchProduce"
    body = b"x" * args.size
    out: dict = {"size": args.size, "batch": args.batch, "flush_mode": args.flush_mode, "queues": args.queues}
    with BenchCluster(args.flush_mode) as bc:
        bc.create_topic(topic, args.queues)
        out["grpc_empty_call_per_s"] = round(grpc_empty_calls_per_s(bc.echo, args.seconds, args.messages))
        with Producer(bc.namesrv, batch_max_messages=args.batch, linger_ms=args.linger_ms, max_in_flight=8) as p:
            msg = Message(topic, body)

            def one() -> None:
                msg.msg_id = ""
                p.send(msg)
            out["sync_send_per_s"] = round(rate(one, args.seconds, args.messages))
            out["send_vs_grpc"] = round(out["sync_send_per_s"] / out["grpc_empty_call_per_s"], 3)

            # async, grouped per queue by the producer
            n = 0
            futs = []
            t0 = time.perf_counter()
            deadline = t0 + args.seconds
            while n < args.messages and time.perf_counter() < deadline:
                futs.append(p.send_async(Message(topic, body)))
                n += 1
            p.flush(60)
            dt = time.perf_counter() - t0
            failed = sum(1 for f in futs if f.exception() is not None)
            out["async_msgs_per_s"] = round(n / dt)
            out["async_mb_per_s"] = round(n * args.size / dt / 1e6, 1)
            out["async_failed"] = failed

            batch = [Message(topic, body) for _ in range(args.batch)]

            def send_batch() -> None:
                for m in batch:
                    m.msg_id = ""
                p.send_batch(batch)
            r = rate(send_batch, args.seconds, args.messages, per_call=args.batch, warmup=3)
            out["batch_msgs_per_s"] = round(r)
            out["batch_mb_per_s"] = round(r * args.size / 1e6, 1)
        # batch records against the one-way gRPC transport of this run (bench/batch_throughput.py)
        out.update(batch_throughput.measure(bc, args.size, args.messages, args.seconds, args.batch_bytes, args.queues))
        out.update(_latency(bc, args))
    return out


def _latency(bc: BenchCluster, args: argparse.Namespace) -> dict:
    from orbitmq.client import Message, Producer

    topic = "BenchLatency"
    bc.create_topic(topic, 4)
    count = int(args.latency_rate * args.latency_seconds)
    res_file = bc.tmp / "latency.json"
    c = proc.start("latency-consumer", [sys.executable, "-m", "orbitmq.bench.latency_consumer", "--namesrv",
                                        bc.namesrv, "--topic", topic, "--count", str(count), "--out", str(res_file),
                                        "--seconds", str(args.latency_seconds + 30)], log_path=bc.tmp / "lat.log")
    bc.children.append(c)
    proc.wait_until(lambda: "READY" in (bc.tmp / "lat.log").read_text(), 30, what="latency consumer ready")
    time.sleep(0.5)
    pad = b"x" * max(0, args.size - 8)
    with Producer(bc.namesrv) as p:
        t0 = time.perf_counter()
        for i in range(count):
            wait = t0 + i / args.latency_rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            p.send(Message(topic, struct.pack("<d", time.time()) + pad))
    proc.wait_until(lambda: not c.alive(), args.latency_seconds + 40, what="latency consumer done")
    data = json.loads(res_file.read_text())
    e2e, st = data["e2e_ms"], data["store_to_receive_ms"]
    return {"latency_rate": args.latency_rate, "latency_samples": len(e2e),
            "e2e_p50_ms": round(percentile(e2e, 50), 2), "e2e_p99_ms": round(percentile(e2e, 99), 2),
            "store_to_receive_p50_ms": round(percentile(st, 50), 2),
            "store_to_receive_p99_ms": round(percentile(st, 99), 2)}

