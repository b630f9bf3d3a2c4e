"""Many topics on one broker: how topic creation and sends scale with the number of topics.

Starts a name server and a broker (real processes), then:
- creates --topics topics one at a time with `Admin.create_topic` (each call returns once the name
  server routes the topic), and reports the mean time per topic for the first and the last 100,
  their ratio (`create_growth`, 1.0 = flat) and the total;
- sends --messages messages of --size bytes in batches of --batch, once all to one topic and once
  spread round-robin over every topic (each with --queues queues), side by side, as
  `spread_vs_one` (msgs/s spread over msgs/s to one topic).
Every phase is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import time

from orbitmq.bench.harness import BenchCluster


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topics", type=int, default=1000, help="topics to create (and spread sends over)")
    p.add_argument("--queues", type=int, default=8, help="queues per topic")
    p.add_argument("--messages", type=int, default=50_000, help="messages per send phase")
    p.add_argument("--size", type=int, default=1024, help="body bytes")
    p.add_argument("--batch", type=int, default=32, help="messages per send_batch call")
    p.add_argument("--seconds", type=float, default=120.0, help="time limit per phase")


def _create(admin, names: list[str], queues: int, deadline: float) -> list[float]:
    took = []
    for name in names:
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        admin.create_topic(name, queues)
        took.append(time.perf_counter() - t0)
    return took


def _send(producer, topics: list[str], n: int, size: int, batch: int, deadline: float) -> float:
    from orbitmq.client import Message

    body = b"x" * size
    sent, i = 0, 0
    t0 = time.perf_counter()
    while sent < n and time.monotonic() < deadline:
        k = min(batch, n - sent)
        producer.send_batch([Message(topics[i % len(topics)], body) for _ in range(k)])
        sent += k
        i += 1
    return sent / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict:
    from orbitmq.client import Admin, Producer
    from orbitmq.common import proc

    if args.topics < 1:
        raise SystemExit("--topics must be at least 1")
    names = [f"BenchTopic{i:05d}" for i in range(args.topics)]
    out: dict = {"topics": args.topics, "queues": args.queues, "size": args.size, "batch": args.batch}
    with BenchCluster() as bc, Admin(bc.namesrv) as admin:
        proc.wait_until(lambda: admin.cluster_list(), 20, what="broker registered")
        t0 = time.perf_counter()
        took = _create(admin, names, args.queues, time.monotonic() + args.seconds)
        out["created"] = len(took)
        out["create_total_s"] = round(time.perf_counter() - t0, 2)
        head, tail = took[:100], took[-100:]
        out["create_first100_ms"] = round(1000 * sum(head) / max(1, len(head)), 2)
        out["create_last100_ms"] = round(1000 * sum(tail) / max(1, len(tail)), 2)
        out["create_growth"] = round(out["create_last100_ms"] / max(1e-9, out["create_first100_ms"]), 2)
        created = names[:len(took)]
        with Producer(bc.namesrv) as p:
            for t in created:   # warm every route once so both phases send, not look up
                p.send_batch([_msg(t)])
            one = _send(p, created[:1], args.messages, args.size, args.batch, time.monotonic() + args.seconds)
            spread = _send(p, created, args.messages, args.size, args.batch, time.monotonic() + args.seconds)
        out["one_topic_msgs_per_s"] = round(one)
        out["spread_msgs_per_s"] = round(spread)
        out["spread_vs_one"] = round(spread / one, 3) if one else 0.0
    return out


def _msg(topic: str):
    from orbitmq.client import Message

    return Message(topic, b"warm")
