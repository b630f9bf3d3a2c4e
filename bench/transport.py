"""The transport's own limit on this machine: what one Python process can move to another per second.

Starts `orbitmq.bench.transport_server` (grpc.aio and the framed protocol on one asyncio loop, as
in a broker) and measures from this process, one call at a time (each waits for its reply):
- gRPC (sync stub, as the client library calls): empty calls/s; bulk produce direction (requests
  of --bulk-bytes, 256 KiB, empty replies) and bulk consume direction (empty requests answered
  with --bulk-bytes), in MB/s (10^6 bytes);
- the same three over the framed protocol (client/remoting.py against broker/remoting.py's shell).

Other benchmarks import `measure()` (or `TransportServer` + `grpc_rate` / `framed_rate`) to put
their figures beside the transport's in the same run. Every loop is bounded by --calls and --seconds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import grpc

from orbitmq.bench.harness import rate
from orbitmq.common import net, proc

BULK_BYTES = 256 * 1024
CALL_TIMEOUT_S = 30.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=3.0, help="time limit per phase")
    p.add_argument("--calls", type=int, default=200_000, help="call limit per phase")
    p.add_argument("--bulk-bytes", type=int, default=BULK_BYTES, help="bytes per bulk call (256 KiB)")
    p.add_argument("--no-framed", action="store_true", help="measure gRPC only")


class TransportServer:
    """The helper process (gRPC + framed), stopped by PID on exit: `.grpc`, `.framed` addresses."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="orbitmq-transport-"))
        self.child: proc.Child | None = None

    def __enter__(self) -> TransportServer:
        try:
            self.grpc = f"127.0.0.1:{net.free_port()}"
            self.framed = f"127.0.0.1:{net.free_port()}"
            log = self.tmp / "server.log"
            self.child = proc.start("transport-server", [sys.executable, "-m", "orbitmq.bench.transport_server",
                                                         "--grpc", self.grpc, "--framed", self.framed], log_path=log)
            proc.wait_until(lambda: "READY" in log.read_text() or not self.child.alive(), 30,
                            what="transport server ready")
            if not self.child.alive():
                raise RuntimeError(f"transport server failed: {log.read_text()[-2000:]}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.child is not None:
            self.child.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def grpc_rate(addr: str, method: str, request: bytes, seconds: float, limit: int) -> float:
    """Sync unary calls/s of `method` (Empty, Sink, Source) over one channel."""
    from orbitmq.bench.transport_server import OPTIONS, SERVICE

    with grpc.insecure_channel(addr, options=OPTIONS) as ch:
        call = ch.unary_unary(f"/{SERVICE}/{method}")
        return rate(lambda: call(request, timeout=CALL_TIMEOUT_S), seconds, limit, warmup=20)


def framed_rate(addr: str, method: str, request: bytes, seconds: float, limit: int) -> float:
    """Calls/s of `method` over one framed connection, each awaited like a sync send."""
    from orbitmq.bench.transport_server import MAX_BYTES, METHODS, Raw
    from orbitmq.client.remoting import RemotingClient

    cli = RemotingClient(addr, methods=METHODS, max_frame=MAX_BYTES)
    try:
        req = Raw(request)
        return rate(lambda: cli.call(method, req, CALL_TIMEOUT_S), seconds, limit, warmup=20)
    finally:
        cli.close()


def measure(seconds: float = 3.0, limit: int = 200_000, bulk_bytes: int = BULK_BYTES, framed: bool = True,
            server: TransportServer | None = None) -> dict:
    """The transport figures as a dict (the keys of `orbitmq bench transport --json`)."""
    from orbitmq.bench.transport_server import size_request

    if server is None:
        with TransportServer() as s:
            return measure(seconds, limit, bulk_bytes, framed, s)
    payload = b"x" * bulk_bytes
    want = size_request(bulk_bytes)
    mb = bulk_bytes / 1e6
    out: dict = {"bulk_bytes": bulk_bytes, "seconds": seconds}
    out["grpc_empty_call_per_s"] = round(grpc_rate(server.grpc, "Empty", b"", seconds, limit))
    out["grpc_produce_mb_per_s"] = round(grpc_rate(server.grpc, "Sink", payload, seconds, limit) * mb, 1)
    out["grpc_consume_mb_per_s"] = round(grpc_rate(server.grpc, "Source", want, seconds, limit) * mb, 1)
    if framed:
        out["framed_empty_call_per_s"] = round(framed_rate(server.framed, "Empty", b"", seconds, limit))
        out["framed_produce_mb_per_s"] = round(framed_rate(server.framed, "Sink", payload, seconds, limit) * mb, 1)
        out["framed_consume_mb_per_s"] = round(framed_rate(server.framed, "Source", want, seconds, limit) * mb, 1)
        out["framed_vs_grpc_empty"] = round(out["framed_empty_call_per_s"] / out["grpc_empty_call_per_s"], 2)
        out["framed_vs_grpc_produce"] = round(out["framed_produce_mb_per_s"] / out["grpc_produce_mb_per_s"], 2)
        out["framed_vs_grpc_consume"] = round(out["framed_consume_mb_per_s"] / out["grpc_consume_mb_per_s"], 2)
    return out


def run(args: argparse.Namespace) -> dict:
    return measure(args.seconds, args.calls, args.bulk_bytes, framed=not args.no_framed)
