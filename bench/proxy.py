"""Throughput through `orbitmq proxy` (cluster mode) vs direct to the broker, in the same run.

Starts a name server, a broker and a proxy in cluster mode (each its own process); with
--broker-protocol auto the broker serves its framed port too, and the proxy forwards sends over it.
The paths:
- direct: OrbitMQ's own client straight to the broker over gRPC, the protocol the official clients
  speak (sync sends; the pull consumer);
- direct_framed (with --broker-protocol auto, the default): OrbitMQ's client over the broker's framed
  port, what it uses by default where a broker announces one (sync sends; `proxy_vs_direct_framed`);
- proxy_official: the official RocketMQ 5 Python client (`rocketmq-python-client`, in a worker
  process) through the proxy (sync sends; SimpleConsumer receives of 32, one ack per message);
- proxy_ours: OrbitMQ's client in proxy mode (ProxyProducer sync sends, ProxyPushConsumer);
- proxy_raw_protocol: the same protocol on the official client's generated stubs, without the
  client's own overhead (sync calls, one AckMessage per received batch).
Every path sends --messages bodies of --size bytes after the same warm-up. So that a machine whose
load changes during the run does not favour one path, the send phases are interleaved: --rounds
rounds, each sending messages/rounds on every path, in a rotating order; a path's rate is all its
messages over all its time. `proxy_vs_direct` = official sync-send rate / direct sync-send rate
(`proxy_vs_direct_rounds`: the same per round); `*_concurrent`: THREADS threads doing sync sends on
one shared client (what a multi-threaded application does), interleaved the same way;
`proxy_receive_vs_direct` likewise for consumption (not interleaved). `official_ceiling_vs_direct`:
the official client's sync sends to a server that does nothing (bench/proxy_null.py), interleaved
too, over direct: the client's own cost, so the most `proxy_vs_direct` could be with a proxy and a
broker that cost nothing. Every phase is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from orbitmq.bench.consume_groups import pull_all
from orbitmq.bench.harness import BenchCluster, process_cpu_s
from orbitmq.common import net, proc

THREADS = 8  # concurrent sync senders sharing one client in the *_concurrent figures
WARMUP = 50  # sends per path and topic before measuring (the official worker uses the same)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=4000, help="messages per path (sync sends; as many concurrent)")
    p.add_argument("--size", type=int, default=1024, help="body bytes")
    p.add_argument("--seconds", type=float, default=60.0, help="time limit per phase")
    p.add_argument("--queues", type=int, default=4)
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the send phases")
    p.add_argument("--broker-protocol", default="auto", choices=["auto", "grpc"],
                   help="how the proxy forwards sends to the broker: auto (the broker serves its framed port and "
                        "the proxy uses it) or grpc (the broker serves gRPC only)")


def concurrent_sends(send, n: int, threads: int, seconds: float) -> tuple[int, float]:
    """Sync sends from `threads` threads sharing one client, `n` in all (bounded by `seconds`):
    (sends done, seconds taken)."""
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
    return done[0], time.perf_counter() - t0


def _sync_sends(send, n: int, seconds: float) -> tuple[int, float]:
    done = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while done < n and time.perf_counter() < deadline:
        send()
        done += 1
    return done, time.perf_counter() - t0


class _Ours:
    """A sender of ours (direct Producer, or ProxyProducer through the proxy) with the two topics warmed up."""

    def __init__(self, producer: Any, topic: str, size: int) -> None:
        from orbitmq.client import Message

        self.p, self.topic, self.Message, self.body = producer, topic, Message, b"x" * size
        for t in (topic, topic + "C"):
            for _ in range(WARMUP):
                producer.send(Message(t, self.body))

    def send(self, n: int, seconds: float) -> tuple[int, float]:
        return _sync_sends(lambda: self.p.send(self.Message(self.topic, self.body)), n, seconds)

    def concurrent(self, n: int, seconds: float) -> tuple[int, float]:
        return concurrent_sends(lambda: self.p.send(self.Message(self.topic + "C", self.body)), n, THREADS, seconds)


class _Official:
    """The official client's worker process (orbitmq.bench.proxy_official), one command at a time."""

    def __init__(self, endpoint: str, topic: str, size: int, timeout: float, null_endpoint: str) -> None:
        self.timeout = timeout
        self.p = subprocess.Popen([sys.executable, "-m", "orbitmq.bench.proxy_official"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ask("start", endpoint=endpoint, topic=topic, size=size, null_endpoint=null_endpoint)

    def ask(self, op: str, **kw: Any) -> dict:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.p.stdin.flush()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            if not line:
                err = self.p.stderr.read()[-2000:] if self.p.stderr else ""
                raise SystemExit(f"official-client worker failed on {op}: {err}")
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise SystemExit(f"official-client worker did not answer {op} in {self.timeout}s")

    def send(self, n: int, seconds: float) -> tuple[int, float]:
        r = self.ask("send", n=n, seconds=seconds)
        return r["n"], r["secs"]

    def concurrent(self, n: int, seconds: float) -> tuple[int, float]:
        r = self.ask("concurrent", n=n, threads=THREADS, seconds=seconds)
        return r["n"], r["secs"]

    def close(self) -> None:
        try:
            if self.p.stdin:
                self.p.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.p.stdin.close()
            self.p.wait(30)
        except Exception:  # noqa: BLE001 - stop it anyway
            self.p.kill()
            self.p.wait(10)


class _OfficialNull:
    """The official client's sync sends to the do-nothing server (bench/proxy_null.py): its own cost."""

    def __init__(self, official: _Official) -> None:
        self.o = official

    def send(self, n: int, seconds: float) -> tuple[int, float]:
        r = self.o.ask("send_null", n=n, seconds=seconds)
        return r["n"], r["secs"]


def _interleaved(paths: dict[str, Any], method: str, n: int, rounds: int, seconds: float,
                 cpu: dict[str, dict[str, float]] | None = None, pids: dict[str, int] | None = None,
                 ) -> dict[str, list]:
    """Run `method` on every path in `rounds` rounds of n/rounds messages (order rotating per round):
    path -> [(sends, seconds) per round]. With `pids` (process name -> pid), `cpu[path][name]` sums
    the CPU seconds each process used while that path ran."""
    names = list(paths)
    out: dict[str, list] = {k: [] for k in names}
    per = [n // rounds + (1 if i < n % rounds else 0) for i in range(rounds)]
    for i in range(rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for k in order:
            before = {name: process_cpu_s(pid) for name, pid in (pids or {}).items()}
            out[k].append(getattr(paths[k], method)(per[i], seconds / rounds))
            if cpu is not None:
                for name, t0 in before.items():
                    cpu.setdefault(k, {}).setdefault(name, 0.0)
                    cpu[k][name] += process_cpu_s((pids or {})[name]) - t0
    return out


def _rate(parts: list) -> float:
    n = sum(p[0] for p in parts)
    return n / max(1e-9, sum(p[1] for p in parts))


def _ours_receive(endpoint: str, topic: str, want: int, seconds: float) -> tuple[int, float]:
    """The proxy-mode push consumer (batch acks)."""
    import threading

    from orbitmq.client.proxy_mode import ProxyPushConsumer

    count = [0]
    lock = threading.Lock()
    done = threading.Event()

    def listener(msgs):
        with lock:
            count[0] += len(msgs)
            if count[0] >= want:
                done.set()

    c = ProxyPushConsumer("bench-ours", endpoint, threads=4, consume_batch=32)
    c.subscribe(topic)
    c.register_listener(listener)
    t0 = time.perf_counter()
    c.start()
    done.wait(seconds)
    dt = time.perf_counter() - t0
    c.shutdown()
    return count[0], dt


def run(args: argparse.Namespace) -> dict:
    from orbitmq.client import Producer
    from orbitmq.client.proxy_mode import ProxyProducer

    n, rounds = args.messages, max(1, min(args.rounds, args.messages))
    out: dict = {"size": args.size, "messages": n, "proxy_mode": "cluster", "rounds": rounds,
                 "warmup": WARMUP, "threads": THREADS}
    framed = args.broker_protocol == "auto"
    out["broker_protocol"] = "framed" if framed else "grpc"
    with BenchCluster(remoting=framed) as bc:
        for t in ("BenchDirect", "BenchProxy", "BenchOurs", "BenchFramed"):
            bc.create_topic(t, args.queues)
            bc.create_topic(t + "C", args.queues)
        bc.create_topic("BenchProxyRaw", 4)
        ep = f"127.0.0.1:{net.free_port()}"
        proxy_child = bc._start("proxy", proc.orbitmq_argv("proxy", "--mode", "cluster", "--namesrv", bc.namesrv, "--listen", ep,
                                             "--set", "log_level=WARNING",
                                                   "--set", f"broker_protocol={args.broker_protocol}"))
        null_ep = f"127.0.0.1:{net.free_port()}"
        bc._start("proxy-null", [sys.executable, "-m", "orbitmq.bench.proxy_null", "--listen", null_ep])
        net.wait_for_port(ep, 30)
        net.wait_for_port(null_ep, 30)
        official = _Official(ep, "BenchProxy", args.size, 4 * args.seconds + 120, null_ep)
        try:
            with Producer(bc.namesrv, protocol="grpc") as dp, ProxyProducer(ep) as op, \
                    Producer(bc.namesrv) as fp:
                paths = {"direct": _Ours(dp, "BenchDirect", args.size), "proxy_official": official,
                         "proxy_ours": _Ours(op, "BenchOurs", args.size)}
                extra = {"official_null": _OfficialNull(official)}
                if framed:   # our client's default where the broker announces its framed port
                    extra["direct_framed"] = _Ours(fp, "BenchFramed", args.size)
                cpu: dict[str, dict[str, float]] = {}
                import os

                # the clients: the official one's worker process, and this process (ours: direct and proxy mode)
                pids = {"proxy": proxy_child.pid, "broker": bc.broker_child.pid, "official_client": official.p.pid,
                        "our_client": os.getpid()}
                sends = _interleaved({**paths, **extra}, "send", n, rounds, args.seconds, cpu, pids)
                conc = _interleaved(paths, "concurrent", n, rounds, args.seconds)
            res = {}
            for k in paths:
                res[k] = {"sent": sum(p[0] for p in sends[k]), "send_msgs_per_s": round(_rate(sends[k])),
                          "concurrent_sent": sum(p[0] for p in conc[k]),
                          "concurrent_send_msgs_per_s": round(_rate(conc[k]))}
            want = {k: res[k]["sent"] + WARMUP for k in res}
            for k, (got, dt) in (("direct", pull_all(bc.namesrv, "BenchDirect", "bench-direct", want["direct"], args.seconds, 32)),
                                 ("proxy_ours", _ours_receive(ep, "BenchOurs", want["proxy_ours"], args.seconds))):
                res[k].update(received=got, receive_msgs_per_s=round(got / dt))
            r = official.ask("receive", want=want["proxy_official"], seconds=args.seconds)
            res["proxy_official"].update(received=r["n"], receive_msgs_per_s=round(r["n"] / r["secs"]))
            raw = official.ask("raw", n=n, seconds=args.seconds)
        finally:
            official.close()
        out.update(res)
    d, o, ours = out["direct"], out["proxy_official"], out["proxy_ours"]

    def ratio(a: float, b: float) -> float:
        return round(a / max(1, b), 3)

    out["proxy_vs_direct"] = ratio(o["send_msgs_per_s"], d["send_msgs_per_s"])
    out["proxy_vs_direct_rounds"] = [round((po[0] / po[1]) / (pd[0] / pd[1]), 3)
                                     for po, pd in zip(sends["proxy_official"], sends["direct"], strict=True)]
    out["official_ceiling_vs_direct"] = round(_rate(sends["official_null"]) / max(1.0, _rate(sends["direct"])), 3)
    out["official_null_send_msgs_per_s"] = round(_rate(sends["official_null"]))
    # CPU of each process per sync send of each path (less sensitive to load than sends/s), and
    # `cpu_direct_vs_proxy`: CPU of a direct send (its client + broker) over an official client's
    # send through the proxy (client + proxy + broker)
    per = {k: {name: secs / max(1, sum(p[0] for p in sends[k])) * 1e6 for name, secs in v.items()}
           for k, v in cpu.items()}
    out["cpu_us_per_send"] = {k: {name: round(us) for name, us in v.items()} for k, v in per.items()}
    if "direct" in per and "proxy_official" in per:
        direct_us = per["direct"]["our_client"] + per["direct"]["broker"]
        proxied_us = sum(per["proxy_official"][n] for n in ("official_client", "proxy", "broker"))
        out["cpu_direct_vs_proxy"] = round(direct_us / max(1.0, proxied_us), 3)
    if "direct_framed" in sends:
        out["direct_framed_send_msgs_per_s"] = round(_rate(sends["direct_framed"]))
        out["proxy_vs_direct_framed"] = ratio(o["send_msgs_per_s"], out["direct_framed_send_msgs_per_s"])
    out["proxy_receive_vs_direct"] = ratio(o["receive_msgs_per_s"], d["receive_msgs_per_s"])
    out["proxy_vs_direct_concurrent"] = ratio(o["concurrent_send_msgs_per_s"], d["concurrent_send_msgs_per_s"])
    out["ours_proxy_vs_direct"] = ratio(ours["send_msgs_per_s"], d["send_msgs_per_s"])
    out["ours_proxy_vs_direct_concurrent"] = ratio(ours["concurrent_send_msgs_per_s"], d["concurrent_send_msgs_per_s"])
    out["ours_receive_vs_direct"] = ratio(ours["receive_msgs_per_s"], d["receive_msgs_per_s"])
    out["proxy_raw_protocol"] = raw
    out["raw_proxy_vs_direct"] = ratio(raw["send_msgs_per_s"], d["send_msgs_per_s"])
    out["raw_receive_vs_direct"] = ratio(raw["receive_msgs_per_s"], d["receive_msgs_per_s"])
    out["lost"] = sum(want[k] - out[k]["received"] for k in want) + (raw["expected"] - raw["received"])
    return out
