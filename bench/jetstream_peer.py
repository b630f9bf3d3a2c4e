"""Worker of `orbitmq bench jetstream`: the NATS JetStream side, driven by nats-py in its own process.

Run as `python -m orbitmq.bench.jetstream_peer MODE --url nats://...`; prints one JSON line:
  sync     --seconds S --size N     one publish at a time, each ack awaited  -> {"n", "secs"}
  latency  --rate R --count N       publishes at R msgs/s (send time in the body's first 8 bytes)
                                    while a `consume` process receives them   -> {"e2e_ms": [...]}
  consume  --count N --out FILE     (started by `latency`) a push subscription, manual acks, in its own
                                    process as OrbitMQ's latency consumer is; prints READY, writes
                                    the latencies to FILE
Streams use file storage (JetStream's default, no fsync per message, like OrbitMQ's async flush).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path


async def _connect(url: str):
    import nats

    return await nats.connect(url, max_reconnect_attempts=0)


async def _stream(js, name: str, subject: str) -> None:
    from nats.js.errors import BadRequestError

    try:
        await js.add_stream(name=name, subjects=[subject])
    except BadRequestError:
        pass    # made by an earlier round


async def sync(url: str, seconds: float, size: int) -> dict:
    nc = await _connect(url)
    js = nc.jetstream()
    await _stream(js, "BENCHSYNC", "bench.sync")
    body = b"x" * size
    for _ in range(50):
        await js.publish("bench.sync", body)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await js.publish("bench.sync", body)
        n += 1
    secs = time.perf_counter() - t0
    await nc.close()
    return {"n": n, "secs": secs}


async def consume(url: str, count: int, out: str) -> None:
    nc = await _connect(url)
    js = nc.jetstream()
    lat: list[float] = []
    done = asyncio.Event()

    async def on_msg(msg) -> None:
        now = time.time()
        (sent,) = struct.unpack_from("<d", msg.data)
        lat.append((now - sent) * 1000.0)
        await msg.ack()
        if len(lat) >= count:
            done.set()

    await js.subscribe("bench.lat", durable=f"lat{int(time.time() * 1000)}", cb=on_msg, manual_ack=True,
                       deliver_policy=_new_only())
    print("READY", flush=True)
    try:
        await asyncio.wait_for(done.wait(), count / 100 + 60)
    finally:
        Path(out).write_text(json.dumps(lat))
        await nc.close()


def _new_only():
    from nats.js.api import DeliverPolicy

    return DeliverPolicy.NEW


async def latency(url: str, rate: int, count: int, size: int) -> dict:
    nc = await _connect(url)
    js = nc.jetstream()
    await _stream(js, "BENCHLAT", "bench.lat")
    out = Path(tempfile.mkdtemp(prefix="orbitmq-js-")) / "lat.json"
    c = subprocess.Popen([sys.executable, "-m", "orbitmq.bench.jetstream_peer", "consume", "--url", url,
                          "--count", str(count), "--out", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        if c.stdout.readline().strip() != "READY":
            raise RuntimeError("the JetStream consumer did not start")
        await asyncio.sleep(0.5)
        pad = b"x" * max(0, size - 8)
        t0 = time.perf_counter()
        for i in range(count):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await js.publish("bench.lat", struct.pack("<d", time.time()) + pad)
        c.wait(count / rate + 60)
    finally:
        if c.poll() is None:
            c.kill()
        await nc.close()
    return {"e2e_ms": json.loads(out.read_text())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["sync", "latency", "consume"])
    p.add_argument("--url", required=True)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--count", type=int, default=4000)
    p.add_argument("--out", default="")
    a = p.parse_args()
    if a.mode == "sync":
        print(json.dumps(asyncio.run(sync(a.url, a.seconds, a.size))), flush=True)
    elif a.mode == "latency":
        print(json.dumps(asyncio.run(latency(a.url, a.rate, a.count, a.size))), flush=True)
    else:
        asyncio.run(consume(a.url, a.count, a.out))


if __name__ == "__main__":
    main()
