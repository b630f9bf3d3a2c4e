"""Consume throughput of pre-produced messages through the real client against real processes.

Starts a name server, a broker (serving its framed port too, unless --protocol grpc: the clients
then pull over it, as they do by default) and a gRPC echo helper (each its own process), produces --messages
messages of --size bytes with batched sends, then measures (msgs/s, MB/s) reading all of them with
the lite pull consumer and, in a fresh group, with the push consumer; plus `grpc_empty_call_per_s`
(an empty unary call to the echo process), and `consume_vs_transport`: pull MB/s over the one-way
gRPC transport's consume direction (256 KiB replies, bench/transport_oneway.py) measured in the
same run. The producer sends batch records. With --groups G, G consumer groups then read the topic
at once, each in its own process, beside one group alone (bench/consume_groups.py: deliveries/s and
the broker's CPU per delivered message). Every phase is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import threading
import time

from orbitmq.bench.consume_groups import pull_all
from orbitmq.bench.harness import BenchCluster, grpc_empty_calls_per_s
from orbitmq.bench.transport_oneway import OneWayServer
from orbitmq.bench.transport_oneway import measure as transport


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=100_000, help="messages to pre-produce and consume")
    p.add_argument("--size", type=int, default=1024, help="body bytes")
    p.add_argument("--seconds", type=float, default=30.0, help="time limit per consume phase")
    p.add_argument("--queues", type=int, default=8)
    p.add_argument("--pull-batch", type=int, default=256, help="messages per pull request")
    p.add_argument("--protocol", default="auto", choices=["auto", "grpc"],
                   help="auto: the broker serves its framed port too and the consumers use it (their default "
                        "where a broker announces one); grpc: the broker serves gRPC only")
    p.add_argument("--groups", type=int, default=0,
                   help="also read the topic with this many consumer groups at once, each in its own process, "
                        "and with one group, side by side (bench/consume_groups.py); 0: skip")


def run(args: argparse.Namespace) -> dict:
    from orbitmq.client import Message, Producer, PushConsumer

    topic = "BenchConsume"
    out: dict = {"size": args.size, "messages": args.messages, "queues": args.queues,
                 "protocol": "framed" if args.protocol == "auto" else "grpc"}
    with BenchCluster(remoting=args.protocol == "auto") as bc:
        bc.create_topic(topic, args.queues)
        out["grpc_empty_call_per_s"] = round(grpc_empty_calls_per_s(bc.echo, 3.0, 100_000))
        with Producer(bc.namesrv) as p:
            body = b"x" * args.size
            left = args.messages
            while left > 0:
                n = min(256, left)
                p.send_batch([Message(topic, body) for _ in range(n)])
                left -= n

        # lite pull
        got, dt = pull_all(bc.namesrv, topic, "bench-pull", args.messages, args.seconds, args.pull_batch)
        out["pull_msgs_per_s"] = round(got / dt)
        out["pull_mb_per_s"] = round(got * args.size / dt / 1e6, 1)
        out["pull_consumed"] = got
        with OneWayServer(bc.tmp) as ow:   # the one-way gRPC bulk limit, same run
            tc = transport(ow.addr, 3.0)["transport_consume_mb_per_s"]
        out["transport_consume_mb_per_s"] = tc
        out["consume_vs_transport"] = round(out["pull_mb_per_s"] / tc, 3)

        # push
        count = [0]
        lock = threading.Lock()
        done = threading.Event()

        def listener(msgs):
            with lock:
                count[0] += len(msgs)
                if count[0] >= args.messages:
                    done.set()

        pc = PushConsumer("bench-push", bc.namesrv, pull_batch=args.pull_batch, consume_batch=32, threads=4,
                          max_cached_per_queue=4 * args.pull_batch)
        pc.subscribe(topic)
        pc.register_listener(listener)
        t0 = time.perf_counter()
        pc.start()
        done.wait(args.seconds)
        dt = time.perf_counter() - t0
        pc.shutdown()
        out["push_msgs_per_s"] = round(count[0] / dt)
        out["push_mb_per_s"] = round(count[0] * args.size / dt / 1e6, 1)
        out["push_consumed"] = count[0]

        if args.groups > 0:   # many groups reading the same messages (bench/consume_groups.py)
            from orbitmq.bench.consume_groups import run_groups

            pid = bc.broker_child.pid
            one = run_groups(bc.namesrv, topic, 1, args.messages, args.seconds, args.pull_batch, pid, "one")
            many = run_groups(bc.namesrv, topic, args.groups, args.messages, args.seconds, args.pull_batch, pid,
                              "many")
            out["one_group"], out["many_groups"] = one, many
            out["groups_vs_one"] = round(many["deliveries_per_s"] / max(1, one["deliveries_per_s"]), 3)
    return out
