"""`orbitmq produce` and `orbitmq consume`: command-line producer and consumer.

`produce` sends --count messages (sync, async-batched, explicit batches or one-way) and writes
one line per acknowledged message to --ids-out (`msg_id queue_key offset`); the last stdout
line is a JSON summary. `consume` runs a push or lite-pull consumer and writes one line per
consumed message to --out (`msg_id queue_key offset`, flushed before the message is acknowledged),
prints `ASSIGNMENT [...]` when its queues change, and exits after --count messages, --idle-exit
seconds without messages, --seconds, or SIGTERM (committing its offsets).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any


def _namesrv_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namesrv", default=os.environ.get("ORBITMQ_NAMESRV", "127.0.0.1:9876"),
                   help="name server addresses, comma separated")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("produce", help="send messages (test/load tool)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _namesrv_arg(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=1, help="messages to send")
    p.add_argument("--size", type=int, default=128, help="body bytes (at least the sequence prefix)")
    p.add_argument("--body", default=None, help="fixed body text instead of generated bodies")
    p.add_argument("--tags", default="")
    p.add_argument("--key", default="", help="a key on every message")
    p.add_argument("--mode", choices=["sync", "async", "batch", "oneway"], default="sync")
    p.add_argument("--batch", type=int, default=64, help="messages per batch (--mode batch) / async batch cap")
    p.add_argument("--linger-ms", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=0.0, help="messages per second (0 = as fast as possible)")
    p.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    p.add_argument("--ids-out", default=None, help="file: one line per acknowledged message")
    p.add_argument("--timeout", type=float, default=5.0, help="send timeout (s)")
    p.add_argument("--retries", type=int, default=2)
    p.set_defaults(func=run_produce)

    c = sub.add_parser("consume", help="consume messages (test/load tool)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _namesrv_arg(c)
    c.add_argument("--group", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--tags", default="*")
    c.add_argument("--mode", choices=["push", "pull"], default="push")
    c.add_argument("--broadcast", action="store_true", help="broadcasting model (offsets in a local file)")
    c.add_argument("--offset-file", default=None, help="broadcasting: local offset file")
    c.add_argument("--out", default=None, help="file: one line per consumed message (default stdout)")
    c.add_argument("--count", type=int, default=0, help="exit after this many messages (0 = no limit)")
    c.add_argument("--idle-exit", type=float, default=0.0, help="exit after this many seconds without messages")
    c.add_argument("--seconds", type=float, default=3600.0, help="exit after this long")
    c.add_argument("--threads", type=int, default=4)
    c.add_argument("--rebalance-interval", type=float, default=1.0)
    c.add_argument("--commit-interval", type=float, default=1.0)
    c.add_argument("--long-poll-ms", type=int, default=1000)
    c.add_argument("--fail-first", type=int, default=0,
                   help="push: answer RECONSUME_LATER the first N times each message is seen (retry test)")
    c.add_argument("--consume-from", choices=["first", "last"], default="first")
    c.set_defaults(func=run_consume)


# ---- produce ---------------------------------------------------------------------------------------


def run_produce(args: argparse.Namespace) -> int:
    from orbitmq.client import Message, Producer
    from orbitmq.client.errors import OrbitError

    try:
        producer = Producer(args.namesrv, send_timeout_s=args.timeout, retries=args.retries,
                            batch_max_messages=args.batch, linger_ms=args.linger_ms)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = open(args.ids_out, "w") if args.ids_out else None  # noqa: SIM115
    lock = threading.Lock()
    sent = failed = 0
    first_error: list[str] = []

    def record(r: Any) -> None:
        nonlocal sent
        with lock:
            sent += 1
            if out is not None:
                out.write(f"{r.msg_id} {r.queue.key()} {r.queue_offset}\n")

    def fail(e: BaseException) -> None:
        nonlocal failed
        with lock:
            failed += 1
            if not first_error:
                first_error.append(str(e))

    def body(i: int) -> bytes:
        if args.body is not None:
            return args.body.encode()
        prefix = f"{i}:".encode()
        return prefix + b"x" * max(0, args.size - len(prefix))

    def mk(i: int) -> Message:
        return Message(args.topic, body(i), tags=args.tags, keys=[args.key] if args.key else [])

    t0 = time.monotonic()
    deadline = t0 + args.seconds
    futures = []
    i = 0
    try:
        while i < args.count and time.monotonic() < deadline:
            if args.rate > 0:
                wait = t0 + i / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            try:
                if args.mode == "sync":
                    record(producer.send(mk(i)))
                    i += 1
                elif args.mode == "oneway":
                    producer.send_oneway(mk(i))
                    i += 1
                    with lock:
                        sent += 1
                elif args.mode == "batch":
                    n = min(args.batch, args.count - i)
                    for r in producer.send_batch([mk(i + k) for k in range(n)]):
                        record(r)
                    i += n
                else:
                    f = producer.send_async(mk(i))
                    f.add_done_callback(lambda f: fail(f.exception()) if f.exception() else record(f.result()))
                    futures.append(f)
                    i += 1
            except OrbitError as e:
                fail(e)
                i += 1 if args.mode != "batch" else min(args.batch, args.count - i)
                if isinstance(e, OrbitError) and not e.retriable:
                    print(f"error: {e}", file=sys.stderr)
                    if args.mode == "sync" and i == 1:
                        break
        producer.flush(max(1.0, deadline - time.monotonic()))
    except OrbitError as e:
        fail(e)
    finally:
        producer.close()
        if out is not None:
            out.close()
    secs = time.monotonic() - t0
    summary = {"sent": sent, "failed": failed, "seconds": round(secs, 3),
               "msgs_per_s": round(sent / secs, 1) if secs > 0 else 0.0}
    if first_error:
        summary["first_error"] = first_error[0]
    print(json.dumps(summary), flush=True)
    return 0 if failed == 0 else 1


# ---- consume ---------------------------------------------------------------------------------------


def run_consume(args: argparse.Namespace) -> int:
    from orbitmq.client import ConsumeStatus, PullConsumer, PushConsumer
    from orbitmq.client.errors import OrbitError

    out = open(args.out, "a", buffering=1) if args.out else sys.stdout  # noqa: SIM115
    lock = threading.Lock()
    done = threading.Event()
    state = {"n": 0, "last": time.monotonic()}
    seen: dict[str, int] = {}

    def on_rebalance(queues: list) -> None:
        print("ASSIGNMENT " + json.dumps([q.key() for q in queues]), flush=True)

    def consumed(msgs: list) -> None:
        with lock:
            for m in msgs:
                out.write(f"{m.msg_id} {m.topic}@{m.broker_set}@{m.queue_id} {m.queue_offset}\n")
            out.flush()
            state["n"] += len(msgs)
            state["last"] = time.monotonic()
            if args.count and state["n"] >= args.count:
                done.set()

    def listener(msgs: list) -> ConsumeStatus:
        if args.fail_first:
            with lock:
                fail = False
                for m in msgs:
                    k = seen.get(m.msg_id, 0)
                    seen[m.msg_id] = k + 1
                    fail = fail or k < args.fail_first
            if fail:
                return ConsumeStatus.RECONSUME_LATER
        consumed(msgs)
        return ConsumeStatus.SUCCESS

    model = "broadcasting" if args.broadcast else "clustering"
    common = dict(model=model, rebalance_interval_s=args.rebalance_interval, commit_interval_s=args.commit_interval,
                  long_poll_ms=args.long_poll_ms, consume_from=args.consume_from, offset_file=args.offset_file,
                  on_rebalance=on_rebalance)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        if args.mode == "push":
            consumer: Any = PushConsumer(args.group, args.namesrv, threads=args.threads, reconsume_delay_s=0.2,
                                         **common)
            consumer.subscribe(args.topic, args.tags)
            consumer.register_listener(listener)
        else:
            consumer = PullConsumer(args.group, args.namesrv, auto_commit_interval_s=args.commit_interval, **common)
            consumer.subscribe(args.topic, args.tags)
        consumer.start()
    except (OrbitError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    t_end = time.monotonic() + args.seconds
    try:
        while not done.is_set() and time.monotonic() < t_end:
            if args.mode == "pull":
                msgs = consumer.poll(0.2)
                if msgs:
                    consumed(msgs)
            else:
                done.wait(0.2)
            if args.idle_exit and time.monotonic() - state["last"] > args.idle_exit:
                break
    finally:
        if args.mode == "push":
            consumer.shutdown()
        else:
            consumer.close()
        if out is not sys.stdout:
            out.close()
    print(json.dumps({"consumed": state["n"]}), flush=True)
    return 0
