"""The machine's floor for one-at-a-time messaging in Python, measured in the same run as OrbitMQ.

`bench produce` judges sync sends/s and end-to-end latency against fixed targets, but on these
shared VMs a bare wake-up of a sleeping process costs from 25 to 150 us and varies within the hour,
so a figure alone says little. This measures the same shapes with no OrbitMQ code at all, over
bare sockets (bench/floor_server.py, its own processes): a blocking client sending `size`-byte
frames to an asyncio server that acknowledges each (`roundtrips_per_s`: the ceiling of sync sends
on this machine now), and frames sent at a fixed rate from this process, acknowledged and relayed
by that server to a consumer process (`relay_latencies`: the ceiling of end-to-end latency through
three processes).
Every loop is bounded by a count and a time limit; children are stopped by PID.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from pathlib import Path

from orbitmq.bench.floor_server import LEN, read_frame
from orbitmq.bench.harness import ChildServer
from orbitmq.common import proc
from orbitmq.common.net import split_addr


class FloorServer(ChildServer):
    """The relay/echo server as a child process; `close()` stops it."""

    def __init__(self, tmp: Path) -> None:
        super().__init__("floor", "orbitmq.bench.floor_server", tmp / "floor.log")
        self.tmp = tmp

    def _connect(self) -> socket.socket:
        s = socket.create_connection(split_addr(self.addr), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def roundtrips_per_s(self, size: int, seconds: float, limit: int) -> float:
        """Frames of `size` bytes sent one at a time, each acknowledgement awaited: round trips/s."""
        frame = LEN.pack(size) + b"x" * size
        buf = bytearray()
        with self._connect() as s:
            for _ in range(50):
                s.sendall(frame)
                read_frame(s, buf)
            n = 0
            t0 = time.perf_counter()
            deadline = t0 + seconds
            while n < limit and time.perf_counter() < deadline:
                s.sendall(frame)
                read_frame(s, buf)
                n += 1
            return n / (time.perf_counter() - t0)

    def relay_latencies(self, size: int, rate: float, seconds: float) -> list[float]:
        """End-to-end latencies (ms) of rate x seconds frames sent at `rate`/s, each acknowledgement
        awaited (as sync sends), relayed by the server to a consumer in its own process."""
        count = int(rate * seconds)
        out = self.tmp / "floor-relay.json"
        log = self.tmp / "floor-consumer.log"
        c = proc.start("floor-consumer", [sys.executable, "-m", "orbitmq.bench.floor_server", "--consume", self.addr,
                                          "--count", str(count), "--seconds", str(seconds + 30), "--out", str(out)],
                       log_path=log)
        try:
            proc.wait_until(lambda: "READY" in log.read_text(), 30, what="floor consumer ready")
            time.sleep(0.3)     # (its registration frame reached the server)
            pad = b"x" * max(0, size - 8)
            buf = bytearray()
            with self._connect() as s:
                t0 = time.perf_counter()
                for i in range(count):
                    wait = t0 + i / rate - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    body = struct.pack("<d", time.time()) + pad
                    s.sendall(LEN.pack(len(body)) + body)
                    read_frame(s, buf)
            proc.wait_until(lambda: not c.alive(), seconds + 40, what="floor consumer done")
            return json.loads(out.read_text())["e2e_ms"]
        finally:
            proc.stop_all([c])
