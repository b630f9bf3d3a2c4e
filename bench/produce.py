"""Producer throughput and end-to-end latency through the real client against real processes.

Starts a name server, a broker (serving gRPC and the framed protocol, `remoting_listen`) and a gRPC
echo helper (each its own process), then measures with `orbitmq.client.Producer`: sync single
sends/s, one message at a time awaiting each receipt, side by side over the framed protocol
(`sync_send_per_s`, what the client uses when the broker announces it; target >= 6,000) and over
gRPC (`grpc_sync_send_per_s`), with the CPU each costs the client and the broker per send; async
sends (batched per queue with a linger) and explicit `send_batch` (msgs/s, MB/s, over --protocol);
end-to-end latency p50/p99 at --latency-rate msgs/s (target p99 <= 1 ms) with a push consumer in
another process, framed then gRPC; and `grpc_empty_call_per_s`, an empty unary call to the echo
process with the same sync client style, so `send_vs_grpc` = sync sends/s / empty calls/s.
Batched produce (`send_batch_async`, two batch records in flight: `produce_vs_transport`; sync
`send_batch`, one at a time: `sync_batch_vs_transport`) and pull consume (`consume_vs_transport`)
are measured against the one-way gRPC bulk transport of the same run (bench/batch_throughput.py).
Every phase is bounded by --messages and --seconds. `--only sync` runs the sync-send phase alone
(framed and gRPC alternating, --sync-rounds rounds), `--only sync-framed` its framed half alone,
`--only batch` the batched produce and pull consume against the transport alone, `--only latency`
the end-to-end latency phases alone;
for CPU-per-send figures and profiling (`sync_rounds`: every round's [sends/s, client us, broker us]). `--tls` measures plaintext and TLS side by
side instead (bench/produce_tls.py, `secure_vs_plain`); `--auth` signed (auth_enabled broker) and
unsigned sends (bench/produce_auth.py, `auth_vs_plain_sync`), both with `--tls --auth`.

Both one-at-a-time phases are also measured without OrbitMQ, over bare sockets in the same run
(bench/floor.py): `raw_roundtrip_per_s` (a blocking client and an asyncio server acknowledging each
frame, alternating with the framed sync-send rounds; `sync_vs_raw`) and `raw_e2e_p50_ms` /
`raw_e2e_p99_ms` (producer, relay and consumer processes at --latency-rate, just before the framed
latency phase): the ceiling this machine allows at that moment.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from typing import Any

from orbitmq.bench import batch_throughput
from orbitmq.bench.floor import FloorServer
from orbitmq.bench.harness import BenchCluster, grpc_empty_calls_per_s, percentile, process_cpu_s, rate
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
    from orbitmq.bench.produce_tls import add_arguments as add_tls_arguments
    add_tls_arguments(p)   # --tls, --rounds
    p.add_argument("--protocol", default="auto", choices=["auto", "grpc"],
                   help="client protocol of the async and batch phases (auto: framed, announced by the broker)")
    p.add_argument("--no-grpc-latency", action="store_true", help="skip the gRPC end-to-end latency phase")
    p.add_argument("--only", default="", choices=["", "sync", "sync-framed", "batch", "latency"],
                   help="run only the sync-send phase: `sync` framed and gRPC alternating, `sync-framed` framed "
                        "only (for CPU per send and profiling); or `batch`: only batched produce and pull "
                        "consume against the one-way transport (`produce_vs_transport`, `consume_vs_transport`); or `latency`: "
                        "only end-to-end latency at --latency-rate, framed then gRPC")
    p.add_argument("--sync-rounds", type=int, default=2,
                   help="rounds of the sync-send phase (each protocol --seconds/2 per round; the best round counts)")
    add_auth_arguments(p)


def add_auth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--auth", action="store_true", help="signed (auth_enabled broker, ACL) vs unsigned sends side "
                   "by side, instead of the phases above (bench/produce_auth.py); with --tls, both comparisons")
    if "--rounds" not in p._option_string_actions:   # shared with --tls (bench/produce_tls.py)
        p.add_argument("--rounds", type=int, default=3, help="--auth/--tls: rounds (--auth: alternating "
                       "plain/signed rounds, medians)")


def run(args: argparse.Namespace) -> dict:
    if getattr(args, "auth", False):   # before --tls: `--tls --auth` runs both (bench/produce_auth.py)
        from orbitmq.bench.produce_auth import run as run_auth
        return run_auth(args)
    if getattr(args, "tls", False):
        from orbitmq.bench.produce_tls import run_tls
        return run_tls(args)
    from orbitmq.client import Message, Producer

    topic = "BenchProduce"
    body = b"x" * args.size
    out: dict = {"size": args.size, "batch": args.batch, "flush_mode": args.flush_mode, "queues": args.queues}
    with BenchCluster(args.flush_mode, remoting=True) as bc:
        bc.create_topic(topic, args.queues)
        if getattr(args, "only", "") == "latency":
            out.update(_latency(bc, args, "auto", ""))
            if not args.no_grpc_latency:
                out.update(_latency(bc, args, "grpc", "grpc_"))
            return out
        if getattr(args, "only", "") == "batch":
            out.update(batch_throughput.measure(bc, args.size, args.messages, args.seconds, args.batch_bytes,
                                                args.queues))
            return out
        if not getattr(args, "only", ""):
            out["grpc_empty_call_per_s"] = round(grpc_empty_calls_per_s(bc.echo, args.seconds, args.messages))
        out.update(_sync_sends(bc, topic, body, args))
        if getattr(args, "only", ""):
            return out
        out["send_vs_grpc"] = round(out["sync_send_per_s"] / out["grpc_empty_call_per_s"], 3)
        with Producer(bc.namesrv, batch_max_messages=args.batch, linger_ms=args.linger_ms, max_in_flight=8,
                      protocol=args.protocol) as p:
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
            errs = [f.exception() for f in futs if f.exception() is not None]
            failed = len(errs)
            if errs:
                out["async_errors"] = {c: sum(1 for e in errs if getattr(e, "code", "") == c)
                                       for c in sorted({str(getattr(e, "code", type(e).__name__)) for e in errs})}
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
        out.update(_latency(bc, args, "auto", ""))
        if not args.no_grpc_latency:
            out.update(_latency(bc, args, "grpc", "grpc_"))
    return out


def _sync_sends(bc: BenchCluster, topic: str, body: bytes, args: argparse.Namespace) -> dict:
    """One message at a time, each receipt awaited: framed (auto) and gRPC, alternating twice (best
    of each, the machine being shared), with client and broker CPU per send (`sync_rounds`: every
    round's [sends/s, client us, broker us]), and the bare-socket round trips of this machine before
    each framed round (`raw_roundtrip_per_s`, bench/floor.py)."""
    res: dict = {}
    framed_only = getattr(args, "only", "") == "sync-framed"
    rounds = max(1, getattr(args, "sync_rounds", 2))
    per_round = (("auto", ""),) if framed_only else (("auto", ""), ("grpc", "grpc_"))
    floor = FloorServer(bc.tmp)
    try:
        for protocol, key in per_round * rounds:
            if protocol == "auto":    # the bare-socket ceiling, just before each framed round
                raw = floor.roundtrips_per_s(len(body) + 100, args.seconds / 2, args.messages)
                res.setdefault("raw_roundtrip_rounds", []).append(round(raw))
                res["raw_roundtrip_per_s"] = max(res.get("raw_roundtrip_per_s", 0), round(raw))
            _sync_round(bc, topic, body, args, protocol, key, res)
    finally:
        floor.close()
    res["sync_vs_raw"] = round(res["sync_send_per_s"] / max(1, res["raw_roundtrip_per_s"]), 3)
    if not framed_only:
        res["framed_vs_grpc_sync"] = round(res["sync_send_per_s"] / res["grpc_sync_send_per_s"], 2)
    return res


def _sync_round(bc: BenchCluster, topic: str, body: bytes, args: argparse.Namespace, protocol: str, key: str,
                res: dict) -> None:
    """One round of sync sends over `protocol`, recorded in `res` under `key`."""
    from orbitmq.client import Message, Producer

    with Producer(bc.namesrv, protocol=protocol) as p:
        msg = Message(topic, body)
        for _ in range(50):
            msg.msg_id = ""
            p.send(msg)
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        b0 = process_cpu_s(bc.broker_child.pid)
        deadline = t0 + args.seconds / 2
        while n < args.messages and time.perf_counter() < deadline:
            msg.msg_id = ""    # a new message each time (the producer assigns the id)
            p.send(msg)
            n += 1
        r = n / (time.perf_counter() - t0)
        client_us = round((time.process_time() - c0) / n * 1e6)
        broker_us = round((process_cpu_s(bc.broker_child.pid) - b0) / n * 1e6)
        res.setdefault(f"{key}sync_rounds", []).append([round(r), client_us, broker_us])
        if r > res.get(f"{key}sync_send_per_s", 0):
            res[f"{key}sync_send_per_s"] = round(r)
            res[f"{key}sync_client_cpu_us"] = client_us
            res[f"{key}sync_broker_cpu_us"] = broker_us


def _latency(bc: BenchCluster, args: argparse.Namespace, protocol: str, key: str) -> dict:
    out: dict = {}
    if not key:     # the bare-socket ceiling of the same shape, just before the framed phase
        with FloorServer(bc.tmp) as floor:
            raw = floor.relay_latencies(args.size, args.latency_rate, args.latency_seconds)
        out.update(raw_latency_samples=len(raw), raw_e2e_p50_ms=round(percentile(raw, 50), 2),
                   raw_e2e_p99_ms=round(percentile(raw, 99), 2))
    e2e, st = latency_samples(bc, args, protocol, key, with_store=True)
    return out | {"latency_rate": args.latency_rate, f"{key}latency_samples": len(e2e),
                  f"{key}e2e_p50_ms": round(percentile(e2e, 50), 2), f"{key}e2e_p99_ms": round(percentile(e2e, 99), 2),
                  f"{key}store_to_receive_p50_ms": round(percentile(st, 50), 2),
                  f"{key}store_to_receive_p99_ms": round(percentile(st, 99), 2)}


def latency_samples(bc: BenchCluster, args: argparse.Namespace, protocol: str, key: str,
                    with_store: bool = False) -> Any:
    """End-to-end latencies (ms) of --latency-rate x --latency-seconds sends, one at a time, received
    by a push consumer in its own process (bench/latency_consumer.py) on a topic of its own; with
    `with_store`, (e2e, store-to-receive) instead."""
    from orbitmq.client import Message, Producer

    topic = f"BenchLatency{key.strip('_').capitalize()}"
    bc.create_topic(topic, 4)
    count = int(args.latency_rate * args.latency_seconds)
    res_file = bc.tmp / f"latency{key}.json"
    log = bc.tmp / f"lat{key}.log"
    c = proc.start("latency-consumer", [sys.executable, "-m", "orbitmq.bench.latency_consumer", "--namesrv",
                                        bc.namesrv, "--topic", topic, "--count", str(count), "--out", str(res_file),
                                        "--seconds", str(args.latency_seconds + 30), "--protocol", protocol],
                   log_path=log)
    bc.children.append(c)
    proc.wait_until(lambda: "READY" in log.read_text(), 30, what="latency consumer ready")
    time.sleep(0.5)
    pad = b"x" * max(0, args.size - 8)
    with Producer(bc.namesrv, protocol=protocol) as p:
        t0 = time.perf_counter()
        for i in range(count):
            wait = t0 + i / args.latency_rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            p.send(Message(topic, struct.pack("<d", time.time()) + pad))
    proc.wait_until(lambda: not c.alive(), args.latency_seconds + 40, what="latency consumer done")
    data = json.loads(res_file.read_text())
    return (data["e2e_ms"], data["store_to_receive_ms"]) if with_store else data["e2e_ms"]

