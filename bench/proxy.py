"""Throughput through `orbitmq proxy` (cluster mode) vs direct to the broker, in the same run.

Starts a name server, a broker and a proxy in cluster mode (each its own process). Through the
proxy: the official RocketMQ 5 Python client (`rocketmq-python-client`, in a worker process) sends
--messages bodies of --size bytes with sync sends, then receives them with a SimpleConsumer
(batches of 32, one ack per message). Direct: OrbitMQ's own client sends the same number with sync
sends and reads them with the pull consumer. `proxy_vs_direct` = proxy sync-send rate / direct
sync-send rate; `proxy_receive_vs_direct` likewise for consumption. `proxy_raw_protocol` (and
`raw_*_vs_direct`) is the same protocol through the same proxy without the official client's own
overhead: sync calls on its generated stubs, one AckMessage per received batch. `proxy_ours` (and
`ours_*_vs_direct`) is OrbitMQ's own client in proxy mode (ProxyProducer sync sends,
ProxyPushConsumer). `*_concurrent` figures: 8 threads doing sync sends on one shared client (what
a multi-threaded application does), `proxy_vs_direct_concurrent` = official client through the
proxy over OrbitMQ's client direct. Every phase is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from orbitmq.bench.harness import BenchCluster
from orbitmq.common import net, proc

THREADS = 8  # concurrent sync senders sharing one client in the *_concurrent figures


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=5000, help="messages per path")
    p.add_argument("--size", type=int, default=1024, help="body bytes")
    p.add_argument("--seconds", type=float, default=60.0, help="time limit per phase")
    p.add_argument("--queues", type=int, default=4)


def concurrent_sends(send, n: int, threads: int, seconds: float) -> float:
    """Sync sends from `threads` threads sharing one client, `n` in all (bounded by `seconds`): msgs/s."""
    import threading

    left = [n]
    lock = threading.Lock()
    done = [0]
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            send()
            with lock:
                done[0] += 1

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return done[0] / (time.perf_counter() - t0)


def _direct(namesrv: str, topic: str, n: int, size: int, seconds: float) -> dict:
    from orbitmq.client import Message, Producer, PullConsumer

    body = b"x" * size
    with Producer(namesrv) as p:
        for _ in range(20):
            p.send(Message(topic, body))
        sent = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while sent < n and time.perf_counter() < deadline:
            p.send(Message(topic, body))
            sent += 1
        send_dt = time.perf_counter() - t0
        conc = concurrent_sends(lambda: p.send(Message(topic + "C", body)), n, THREADS, seconds)
    c = PullConsumer("bench-direct", namesrv, pull_batch=32)
    c.subscribe(topic)
    got = 0
    t0 = time.perf_counter()
    c.start()
    deadline = t0 + seconds
    while got < sent + 20 and time.perf_counter() < deadline:
        got += len(c.poll(1.0))
    recv_dt = time.perf_counter() - t0
    c.close()
    return {"sent": sent, "send_msgs_per_s": round(sent / send_dt), "received": got,
            "receive_msgs_per_s": round(got / recv_dt), "concurrent_send_msgs_per_s": round(conc)}


def _ours(endpoint: str, topic: str, n: int, size: int, seconds: float) -> dict:
    """OrbitMQ's client in proxy mode: sync sends, then the proxy-mode push consumer (batch acks)."""
    import threading

    from orbitmq.client import Message
    from orbitmq.client.proxy_mode import ProxyProducer, ProxyPushConsumer

    body = b"x" * size
    with ProxyProducer(endpoint) as p:
        for _ in range(20):
            p.send(Message(topic, body))
        sent = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while sent < n and time.perf_counter() < deadline:
            p.send(Message(topic, body))
            sent += 1
        send_dt = time.perf_counter() - t0
        conc = concurrent_sends(lambda: p.send(Message(topic + "C", body)), n, THREADS, seconds)
    count = [0]
    lock = threading.Lock()
    done = threading.Event()

    def listener(msgs):
        with lock:
            count[0] += len(msgs)
            if count[0] >= sent + 20:
                done.set()

    c = ProxyPushConsumer("bench-ours", endpoint, threads=4, consume_batch=32)
    c.subscribe(topic)
    c.register_listener(listener)
    t0 = time.perf_counter()
    c.start()
    done.wait(seconds)
    recv_dt = time.perf_counter() - t0
    c.shutdown()
    return {"sent": sent, "send_msgs_per_s": round(sent / send_dt), "received": count[0],
            "receive_msgs_per_s": round(count[0] / recv_dt), "concurrent_send_msgs_per_s": round(conc)}


def run(args: argparse.Namespace) -> dict:
    out: dict = {"size": args.size, "messages": args.messages, "proxy_mode": "cluster"}
    with BenchCluster() as bc:
        bc.create_topic("BenchDirect", args.queues)
        bc.create_topic("BenchProxy", args.queues)
        bc.create_topic("BenchProxyRaw", 4)
        bc.create_topic("BenchOurs", args.queues)
        for t in ("BenchDirectC", "BenchOursC", "BenchProxyC"):
            bc.create_topic(t, args.queues)
        ep = f"127.0.0.1:{net.free_port()}"
        bc._start("proxy", proc.orbitmq_argv("proxy", "--mode", "cluster", "--namesrv", bc.namesrv, "--listen", ep,
                                             "--set", "log_level=WARNING"))
        net.wait_for_port(ep, 30)
        out["direct"] = _direct(bc.namesrv, "BenchDirect", args.messages, args.size, args.seconds)
        out["proxy_ours"] = _ours(ep, "BenchOurs", args.messages, args.size, args.seconds)
        r = subprocess.run([sys.executable, "-m", "orbitmq.bench.proxy_official", "--endpoint", ep, "--topic",
                            "BenchProxy", "--messages", str(args.messages), "--size", str(args.size),
                            "--seconds", str(args.seconds)], capture_output=True, text=True,
                           timeout=4 * args.seconds + 120)
        if r.returncode != 0:
            raise SystemExit(f"official-client worker failed: {r.stderr[-2000:]}")
        out["proxy_official"] = json.loads(r.stdout.strip().splitlines()[-1])
    d, o = out["direct"], out["proxy_official"]
    out["proxy_vs_direct"] = round(o["send_msgs_per_s"] / max(1, d["send_msgs_per_s"]), 3)
    out["proxy_receive_vs_direct"] = round(o["receive_msgs_per_s"] / max(1, d["receive_msgs_per_s"]), 3)
    ours = out["proxy_ours"]
    out["proxy_vs_direct_concurrent"] = round(o["concurrent_send_msgs_per_s"] / max(1, d["concurrent_send_msgs_per_s"]), 3)
    out["ours_proxy_vs_direct_concurrent"] = round(ours["concurrent_send_msgs_per_s"]
                                                   / max(1, d["concurrent_send_msgs_per_s"]), 3)
    out["ours_proxy_vs_direct"] = round(ours["send_msgs_per_s"] / max(1, d["send_msgs_per_s"]), 3)
    out["ours_receive_vs_direct"] = round(ours["receive_msgs_per_s"] / max(1, d["receive_msgs_per_s"]), 3)
    raw = o.pop("raw")
    out["proxy_raw_protocol"] = raw
    out["raw_proxy_vs_direct"] = round(raw["send_msgs_per_s"] / max(1, d["send_msgs_per_s"]), 3)
    out["raw_receive_vs_direct"] = round(raw["receive_msgs_per_s"] / max(1, d["receive_msgs_per_s"]), 3)
    out["lost"] = (d["sent"] + 20 - d["received"]) + (o["sent"] + 20 - o["received"]) + (raw["sent"] - raw["received"]) \
        + (ours["sent"] + 20 - ours["received"])
    return out
