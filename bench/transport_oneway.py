"""The gRPC bulk limit of this machine, one way, measured in the same run as the feature it judges:
unary calls from this process to the one-way server (bench/oneway_server.py, its own process)
carrying `size` bytes with an empty reply (the produce direction), and empty requests answered
with `size` bytes (the consume direction), one call at a time from one thread like the client's
sync sends, in MB/s. Bounded by count and time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc

from orbitmq.bench.harness import ChildServer

KiB = 1024
OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


class OneWayServer(ChildServer):
    """The one-way server as a child process (stopped by PID on exit)."""

    def __init__(self, tmp: Path, reply_bytes: int = 256 * KiB) -> None:
        super().__init__("oneway", "orbitmq.bench.oneway_server", tmp / "oneway.log", "--reply-bytes", str(reply_bytes))


def measure(addr: str, seconds: float = 3.0, size: int = 256 * KiB, limit: int = 100_000) -> dict[str, float]:
    """{"transport_produce_mb_per_s", "transport_consume_mb_per_s", "transport_bytes"}."""
    from orbitmq.bench.oneway_server import SINK, SOURCE

    payload = os.urandom(size)
    out: dict[str, float] = {"transport_bytes": size}
    with grpc.insecure_channel(addr, options=OPTIONS) as ch:
        for name, method, req in (("produce", SINK, payload), ("consume", SOURCE, b"")):
            call = ch.unary_unary(method)
            for _ in range(20):
                call(req, timeout=10)
            n = got = 0
            t0 = time.perf_counter()
            deadline = t0 + seconds
            while n < limit and time.perf_counter() < deadline:
                r = call(req, timeout=10)
                got += len(req) + len(r)
                n += 1
            out[f"transport_{name}_mb_per_s"] = round(got / (time.perf_counter() - t0) / 1e6, 1)
    return out
