"""Batched produce and pull consume through the real client, judged against the one-way gRPC bulk
limit measured in the same run (bench/transport_oneway.py): `produce_vs_transport` = message bytes/s
of `send_batch_async` calls, PIPELINE batches in flight (each a batch record of about --batch-bytes:
the client builds the next while the broker stores the last), over the transport's produce
direction (256 KiB requests, empty replies, one at a time); `sync_batch_vs_transport` the same for
sync `send_batch` calls, one at a time. The three are measured in alternating slices (`rounds`) so
that load from elsewhere on the machine hits them alike;
`consume_vs_transport` = message bytes/s of the lite pull consumer reading them back (after its
first poll returned: the group's start, rebalance and first pull are `pull_start_s`, and
`pull_msgs_per_s_with_start` counts them in) over the transport's consume direction (empty requests, 256 KiB replies), measured before and after the
produce phase and averaged (the machine is shared). Also: async sends (msgs/s).
Used by `orbitmq bench produce` and `orbitmq bench consume`; bounded by --messages and --seconds.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

from orbitmq.bench.transport_oneway import OneWayServer
from orbitmq.bench.transport_oneway import measure as transport

PIPELINE = 2   # batches in flight in the pipelined phase (send_batch_async)


def per_batch(size: int, batch_bytes: int) -> int:
    return max(1, batch_bytes // max(1, size))


def measure(bc: Any, size: int, messages: int, seconds: float, batch_bytes: int, queues: int,
            consume: bool = True, pull_batches: int = 4, rounds: int = 3) -> dict[str, Any]:
    from orbitmq.client import Message, Producer, PullConsumer

    topic = "BenchBatched"
    bc.create_topic(topic, queues)
    n_batch = per_batch(size, batch_bytes)
    body = b"x" * size
    out: dict[str, Any] = {"batch_messages": n_batch, "batch_bytes": n_batch * size}
    with OneWayServer(bc.tmp) as ow:
        t_before = transport(ow.addr, min(seconds, 3.0))
        with Producer(bc.namesrv, batch_max_messages=n_batch, batch_max_bytes=n_batch * (size + 64) + 1,
                      linger_ms=5.0, max_in_flight=8) as p:
            batches = [[Message(topic, body) for _ in range(n_batch)] for _ in range(PIPELINE + 1)]
            turn = itertools.cycle(batches)

            def fresh() -> list[Any]:
                batch = next(turn)
                for m in batch:     # (a send writes its ids into the messages: these go as new ones)
                    m.msg_id = ""
                return batch

            def sync_slice(t_end: float, cap: int) -> int:
                k = 0
                while k < cap and time.perf_counter() < t_end:
                    p.send_batch(fresh())
                    k += n_batch
                return k

            def pipelined_slice(t_end: float, cap: int) -> int:
                k = 0
                pending: deque[Any] = deque()
                while k < cap and time.perf_counter() < t_end:
                    if len(pending) >= PIPELINE:
                        pending.popleft().result()
                    pending.append(p.send_batch_async(fresh()))
                    k += n_batch
                for f in pending:     # a slice ends when all its batches are acknowledged
                    f.result()
                return k

            p.send_batch(fresh())   # warm-up
            # the machine is shared: alternate slices of the transport, sync and pipelined sends
            got = {"sync": [0, 0.0], "pipelined": [0, 0.0]}
            t_mb = 0.0
            cap = max(n_batch, messages // rounds)
            for _ in range(rounds):
                t_mb += transport(ow.addr, seconds / rounds)["transport_produce_mb_per_s"]
                for name, step in (("sync", sync_slice), ("pipelined", pipelined_slice)):
                    t0 = time.perf_counter()
                    got[name][0] += step(t0 + seconds / rounds, cap)
                    got[name][1] += time.perf_counter() - t0
            tp = t_mb / rounds
            r_sync = got["sync"][0] / got["sync"][1]
            r = got["pipelined"][0] / got["pipelined"][1]
            out["batched_produce_msgs_per_s"] = round(r)
            out["batched_produce_mb_per_s"] = round(r * size / 1e6, 1)
            out["batched_produce_in_flight"] = PIPELINE
            out["sync_batch_msgs_per_s"] = round(r_sync)
            out["sync_batch_mb_per_s"] = round(r_sync * size / 1e6, 1)
            out["sync_batch_vs_transport"] = round(r_sync * size / 1e6 / tp, 3)
            out["transport_produce_interleaved_mb_per_s"] = round(tp, 1)

            n = 0
            futs = []
            t0 = time.perf_counter()
            deadline = t0 + seconds
            while n < messages and time.perf_counter() < deadline:
                futs.append(p.send_async(Message(topic, body)))
                n += 1
            p.flush(60)
            dt = time.perf_counter() - t0
            out["async_batched_msgs_per_s"] = round(n / dt)
            out["async_batched_mb_per_s"] = round(n * size / dt / 1e6, 1)
            out["async_batched_failed"] = sum(1 for f in futs if f.exception() is not None)
        t_after = transport(ow.addr, min(seconds, 3.0))
    tp = t_mb / rounds
    tc = (t_before["transport_consume_mb_per_s"] + t_after["transport_consume_mb_per_s"]) / 2
    out["transport_produce_mb_per_s"] = round(tp, 1)
    out["transport_consume_mb_per_s"] = round(tc, 1)
    out["produce_vs_transport"] = round(out["batched_produce_mb_per_s"] / tp, 3)
    if consume:
        total = stored(bc, topic, queues)
        # pulls of about 4 batches (1 MiB at the default --batch-bytes): per-call costs amortised
        c = PullConsumer("bench-batched", bc.namesrv, pull_batch=pull_batches * n_batch, max_poll_messages=1 << 16,
                         max_cached_per_queue=max(8 * n_batch, 4096))
        c.subscribe(topic)
        got = 0
        t0 = time.perf_counter()
        c.start()
        deadline = t0 + max(seconds, 10.0) * 3
        t_first = first = 0.0
        while got < total and time.perf_counter() < deadline:
            msgs = c.poll(1.0)
            got += sum(1 for m in msgs if len(m.body) == size)   # every body is read, as a consumer would
            if not t_first and got:
                t_first, first = time.perf_counter(), got   # the group joined and the first pull came back
        t_end = time.perf_counter()
        c.close()
        out["pull_consumed"] = got
        out["pull_batch_messages"] = pull_batches * n_batch
        out["pull_start_s"] = round(t_first - t0, 3)
        out["pull_msgs_per_s_with_start"] = round(got / (t_end - t0))
        # steady state: what came after the first poll, over the time after it
        rate = (got - first) / (t_end - t_first) if t_first and got > first and t_end > t_first else got / (t_end - t0)
        out["pull_msgs_per_s"] = round(rate)
        out["pull_mb_per_s"] = round(rate * size / 1e6, 1)
        out["consume_vs_transport"] = round(out["pull_mb_per_s"] / tc, 3)
    return out


def stored(bc: Any, topic: str, queues: int) -> int:
    """Messages stored in the topic's queues on the bench broker (from their offset ranges)."""
    import grpc

    from orbitmq.protos import broker_pb2, broker_pb2_grpc

    total = 0
    with grpc.insecure_channel(bc.broker) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        for q in range(queues):
            r = stub.GetOffsetRange(broker_pb2.GetOffsetRangeRequest(topic=topic, queue_id=q), timeout=10)
            total += r.max_offset - r.min_offset
    return total
