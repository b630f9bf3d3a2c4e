"""OrbitMQ beside NATS JetStream on this machine, in one run, the two taking turns.

OrbitMQ's one-at-a-time goals (6,000 sync sends/s, end-to-end p99 <= 1 ms at 1,000 msgs/s) are
JetStream's figures from another day; on a shared machine only a side-by-side run says
where OrbitMQ stands. Each round runs, alternately:
  - sync sends: OrbitMQ's `Producer.send` over the framed protocol, one message at a time with each
    receipt awaited, then JetStream's `js.publish` awaiting each ack (nats-py), --seconds each;
  - end-to-end latency at --latency-rate msgs/s for --latency-seconds: OrbitMQ's `orbitmq bench
    produce` latency phase (a push consumer in its own process), then JetStream's (a push
    subscription with manual acks in its own process, bench/jetstream_peer.py).
One broker (async flush) against one nats-server with file storage (no fsync per message either),
both on loopback. Reports every round, medians, and ratios where >= 1 means OrbitMQ is at least as
good: `sync_vs_jetstream` (sends/s over JetStream's), `e2e_p50_jetstream_over_orbitmq` and
`e2e_p99_jetstream_over_orbitmq` (JetStream's latency over OrbitMQ's).

Needs `nats-server` on PATH (Debian: `apt-get install nats-server`) and nats-py (`pip install
'orbitmq[peers]'`); without them it stops with that message.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from orbitmq.bench.harness import BenchCluster, percentile
from orbitmq.common import net, proc

MISSING = ("`orbitmq bench jetstream` needs NATS JetStream to compare with: nats-server on PATH (Debian: "
           "apt-get install nats-server) and nats-py (pip install 'orbitmq[peers]')")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=3, help="turns of each phase per system")
    p.add_argument("--seconds", type=float, default=2.0, help="length of one sync-send round")
    p.add_argument("--size", type=int, default=1024, help="body bytes")
    p.add_argument("--latency-rate", type=int, default=1000, help="msgs/s of the latency phase")
    p.add_argument("--latency-seconds", type=float, default=4.0, help="length of one latency round")
    p.add_argument("--no-latency", action="store_true", help="sync sends only")


def missing_peer() -> str | None:
    """Why JetStream cannot run here, or None."""
    if shutil.which("nats-server") is None:
        return MISSING
    try:
        import nats  # noqa: F401
    except ImportError:
        return MISSING
    return None


def summary(sync: dict[str, list[float]], e2e: dict[str, list[list[float]]]) -> dict[str, Any]:
    """Figures and ratios from the rounds: `sync` maps "orbitmq"/"jetstream" to each round's sends/s,
    `e2e` to each round's latencies (ms). Percentiles are over every round's samples together."""
    out: dict[str, Any] = {}
    for name, key in (("orbitmq", ""), ("jetstream", "js_")):
        rounds = sync.get(name) or []
        if rounds:
            out[f"{key}sync_rounds"] = [round(r) for r in rounds]
            out[f"{key}sync_send_per_s"] = round(statistics.median(rounds))
        samples = [x for r in e2e.get(name) or [] for x in r]
        if samples:
            out[f"{key}e2e_p50_ms"] = round(percentile(samples, 50), 3)
            out[f"{key}e2e_p99_ms"] = round(percentile(samples, 99), 3)
            out[f"{key}e2e_rounds_p50_p99_ms"] = [[round(percentile(r, 50), 3), round(percentile(r, 99), 3)]
                                                for r in e2e[name]]
            out[f"{key}latency_samples"] = len(samples)
    if out.get("js_sync_send_per_s"):
        out["sync_vs_jetstream"] = round(out["sync_send_per_s"] / out["js_sync_send_per_s"], 3)
    for p in ("p50", "p99"):
        if out.get(f"e2e_{p}_ms") and out.get(f"js_e2e_{p}_ms"):
            out[f"e2e_{p}_jetstream_over_orbitmq"] = round(out[f"js_e2e_{p}_ms"] / out[f"e2e_{p}_ms"], 3)
    return out


def _orbit_sync(bc: BenchCluster, topic: str, body: bytes, seconds: float) -> float:
    from orbitmq.client import Message, Producer

    with Producer(bc.namesrv) as p:
        msg = Message(topic, body)
        for _ in range(50):
            msg.msg_id = ""
            p.send(msg)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            msg.msg_id = ""      # a new message each time (the producer assigns the id)
            p.send(msg)
            n += 1
        return n / (time.perf_counter() - t0)


def _peer(url: str, *args: str, timeout: float) -> dict:
    r = subprocess.run([sys.executable, "-m", "orbitmq.bench.jetstream_peer", *args, "--url", url],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"the JetStream worker failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _orbit_latency(bc: BenchCluster, args: argparse.Namespace, round_no: int) -> list[float]:
    from orbitmq.bench.produce import latency_samples

    return latency_samples(bc, args, "auto", f"r{round_no}_")


def run(args: argparse.Namespace) -> dict:
    why = missing_peer()
    if why is not None:
        raise SystemExit(why)
    sync: dict[str, list[float]] = {"orbitmq": [], "jetstream": []}
    e2e: dict[str, list[list[float]]] = {"orbitmq": [], "jetstream": []}
    body = b"x" * args.size
    with BenchCluster("async", remoting=True) as bc:
        bc.create_topic("BenchPeerSync", 8)
        port = net.free_port()
        url = f"nats://127.0.0.1:{port}"
        bc.children.append(proc.start("nats-server", ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
                                                      "-sd", str(bc.tmp / "jetstream")],
                                      log_path=bc.tmp / "nats-server.log"))
        net.wait_for_port(f"127.0.0.1:{port}", 30)
        count = int(args.latency_rate * args.latency_seconds)
        for r in range(args.rounds):
            sync["orbitmq"].append(_orbit_sync(bc, "BenchPeerSync", body, args.seconds))
            js = _peer(url, "sync", "--seconds", str(args.seconds), "--size", str(args.size),
                       timeout=args.seconds + 60)
            sync["jetstream"].append(js["n"] / js["secs"])
            if not args.no_latency:
                e2e["orbitmq"].append(_orbit_latency(bc, args, r))
                e2e["jetstream"].append(_peer(url, "latency", "--rate", str(args.latency_rate), "--count",
                                              str(count), "--size", str(args.size),
                                              timeout=args.latency_seconds + 120)["e2e_ms"])
    out = summary(sync, e2e)
    out.update({"size": args.size, "rounds": args.rounds, "latency_rate": args.latency_rate})
    return out
