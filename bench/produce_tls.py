"""`orbitmq bench produce --tls`: the producer's throughput over TLS beside plaintext, in one run.

Starts two name server + broker pairs as real processes, one plaintext and one serving TLS
(throwaway CA), and measures the same phases against both: sync single sends/s,
async sends/s (batched by the producer), explicit `send_batch` msgs/s, and the time to the first
acknowledged send of a fresh producer (route lookup + connections + handshakes). To cancel the
load of other processes on a shared machine, each phase alternates short slices (0.25-0.5 s) of
plaintext and TLS until each had --seconds x --rounds; `secure_vs_plain` = TLS sync sends/s over
plaintext sync sends/s (target >= 0.8), with the same ratio for async and batch sends beside it;
`first_send_ms` is the median of fresh producers, alternated too. Because throughput on a shared
machine moves with everyone else's load, each phase also reports CPU microseconds per message
(this process during that mode's slices + that mode's name server and broker, from /proc) and
`secure_vs_plain_cpu*` = plaintext CPU per message over TLS CPU per message.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from orbitmq.bench.harness import BenchCluster

TOPIC = "BenchTls"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls", action="store_true",
                   help="measure plaintext and TLS side by side in one run (secure_vs_plain)")
    if "--rounds" not in p._option_string_actions:   # shared with --auth (bench/produce_auth.py): same meaning
        p.add_argument("--rounds", type=int, default=3,
                       help="--tls/--auth: rounds; --tls measures each mode and phase for --seconds x --rounds")


def _server_cpu_s(bc: BenchCluster) -> float:
    """CPU seconds used so far by a bench cluster's name server and broker (from /proc)."""
    total = 0
    for c in bc.children:
        if c.name in ("namesrv", "broker"):
            with open(f"/proc/{c.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])   # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _interleaved(steps: dict[str, Callable[[], int]], clusters: dict[str, BenchCluster], total_s: float,
                 slice_s: float, limit: int) -> dict[str, dict[str, float]]:
    """Run each mode's step (returns messages done) in alternating slices of `slice_s` until every
    mode had `total_s` or `limit` messages. Per mode: messages/s, and CPU microseconds per message
    (this process during that mode's slices, plus that mode's name server and broker), which
    load on the machine does not change the way it changes throughput."""
    names = list(steps)
    done = dict.fromkeys(names, 0)
    spent = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    servers0 = {m: _server_cpu_s(clusters[m]) for m in names}
    i = 0
    while any(spent[m] < total_s and done[m] < limit for m in names):
        for m in (names if i % 2 == 0 else names[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < slice_s and done[m] < limit:
                done[m] += steps[m]()
            spent[m] += time.perf_counter() - t0
            cpu[m] += time.process_time() - c0
        i += 1
    out = {}
    for m in names:
        servers = _server_cpu_s(clusters[m]) - servers0[m]
        out[m] = {"per_s": done[m] / spent[m] if spent[m] else 0.0,
                  "cpu_us_per_msg": (cpu[m] + servers) / done[m] * 1e6 if done[m] else 0.0}
    return out


def _first_send_ms(bc: BenchCluster, body: bytes) -> float:
    from orbitmq.client import Message, Producer

    t0 = time.perf_counter()
    with Producer(bc.namesrv, tls=bc.client_tls) as fresh:
        fresh.send(Message(TOPIC, body))
    return (time.perf_counter() - t0) * 1000


def run_tls(args: argparse.Namespace) -> dict[str, Any]:
    """Plaintext and TLS figures from one run (see the module docstring)."""
    from orbitmq.client import Message, Producer

    rounds = int(getattr(args, "rounds", 3))
    if rounds < 1:
        raise ValueError("--rounds must be >= 1")
    body = b"x" * args.size
    total = args.seconds * rounds
    out: dict[str, Any] = {"size": args.size, "batch": args.batch, "flush_mode": args.flush_mode,
                           "seconds_per_mode_and_phase": total, "slices": "alternating plain/tls"}
    with BenchCluster(args.flush_mode) as plain, BenchCluster(args.flush_mode, tls=True) as secure:
        clusters = {"plain": plain, "tls": secure}
        for bc in clusters.values():
            bc.create_topic(TOPIC, args.queues)
        first = {m: [] for m in clusters}
        for r in range(max(3, rounds)):
            for m in (["plain", "tls"] if r % 2 == 0 else ["tls", "plain"]):
                first[m].append(_first_send_ms(clusters[m], body))
        producers = {m: Producer(bc.namesrv, batch_max_messages=args.batch, linger_ms=args.linger_ms,
                                 max_in_flight=8, tls=bc.client_tls) for m, bc in clusters.items()}
        try:
            msgs = {m: Message(TOPIC, body) for m in clusters}
            batches = {m: [Message(TOPIC, body) for _ in range(args.batch)] for m in clusters}
            failed = dict.fromkeys(clusters, 0)

            def sync_step(m: str) -> Callable[[], int]:
                def step() -> int:
                    msgs[m].msg_id = ""
                    producers[m].send(msgs[m])
                    return 1
                return step

            def batch_step(m: str) -> Callable[[], int]:
                def step() -> int:
                    for x in batches[m]:
                        x.msg_id = ""
                    producers[m].send_batch(batches[m])
                    return args.batch
                return step

            def async_step(m: str) -> Callable[[], int]:
                def step() -> int:   # one pipeline of `batch` async sends, then wait for them all
                    futs = [producers[m].send_async(Message(TOPIC, body)) for _ in range(args.batch)]
                    producers[m].flush(60)
                    failed[m] += sum(1 for f in futs if f.exception() is not None)
                    return len(futs)
                return step

            for m in clusters:   # warm-up: connections open, routes cached
                for _ in range(20):
                    sync_step(m)()
            sync = _interleaved({m: sync_step(m) for m in clusters}, clusters, total, 0.25, args.messages)
            asyn = _interleaved({m: async_step(m) for m in clusters}, clusters, total, 0.5, args.messages)
            batch = _interleaved({m: batch_step(m) for m in clusters}, clusters, total, 0.5, args.messages)
        finally:
            for p in producers.values():
                p.close()
    for m in clusters:
        out[m] = {"sync_send_per_s": round(sync[m]["per_s"]), "async_msgs_per_s": round(asyn[m]["per_s"]),
                  "batch_msgs_per_s": round(batch[m]["per_s"]), "async_failed": failed[m],
                  "first_send_ms": round(statistics.median(first[m]), 1),
                  "sync_cpu_us_per_msg": round(sync[m]["cpu_us_per_msg"], 1),
                  "async_cpu_us_per_msg": round(asyn[m]["cpu_us_per_msg"], 1),
                  "batch_cpu_us_per_msg": round(batch[m]["cpu_us_per_msg"], 1)}

    def ratio(d: dict[str, dict[str, float]], key: str = "per_s", inverse: bool = False) -> float:
        a, b = d["tls"][key], d["plain"][key]
        if inverse:
            a, b = b, a
        return round(a / b, 3) if b else 0.0

    out["secure_vs_plain"] = ratio(sync)
    out["secure_vs_plain_async"] = ratio(asyn)
    out["secure_vs_plain_batch"] = ratio(batch)
    # plaintext CPU per message over TLS CPU per message (1.0: TLS costs nothing; 0.8: 25% more CPU)
    out["secure_vs_plain_cpu"] = ratio(sync, "cpu_us_per_msg", inverse=True)
    out["secure_vs_plain_cpu_async"] = ratio(asyn, "cpu_us_per_msg", inverse=True)
    out["secure_vs_plain_cpu_batch"] = ratio(batch, "cpu_us_per_msg", inverse=True)
    return out
