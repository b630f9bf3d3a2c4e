"""The transport's own limit on this machine: what one Python process can move to another per second.

Starts `orbitmq.bench.transport_server` (grpc.aio and the framed protocol on one asyncio loop, as
in a broker) and measures from this process, one call at a time (each waits for its reply):
- gRPC (sync stub, as the client library calls): empty calls/s; bulk produce direction (requests
  of --bulk-bytes, 256 KiB, empty replies) and bulk consume direction (empty requests answered
  with --bulk-bytes), in MB/s (10^6 bytes);
- the same three over the framed protocol (client/remoting.py against broker/remoting.py's shell).
The six phases run in alternating slices (4 rounds), so a shared machine's drifting load weighs on
all of them alike.

Other benchmarks import `measure()` (or `TransportServer` + `grpc_call` / `framed_call` +
`interleaved_rates`) to put their figures beside the transport's in the same run. Every loop is
bounded by --calls and --seconds (per phase, over all its slices).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

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


def grpc_call(addr: str, method: str) -> tuple[Callable[[bytes], object], Callable[[], None]]:
    """(sync unary call of `method` (Empty, Sink, Source) on one channel, close)."""
    from orbitmq.bench.transport_server import OPTIONS, SERVICE

    ch = grpc.insecure_channel(addr, options=OPTIONS)
    call = ch.unary_unary(f"/{SERVICE}/{method}")
    return (lambda request: call(request, timeout=CALL_TIMEOUT_S)), ch.close


def framed_call(addr: str, method: str) -> tuple[Callable[[bytes], object], Callable[[], None]]:
    """(a call of `method` over one framed connection, awaited like a sync send; close)."""
    from orbitmq.bench.transport_server import MAX_BYTES, METHODS, Raw
    from orbitmq.client.remoting import RemotingClient

    cli = RemotingClient(addr, methods=METHODS, max_frame=MAX_BYTES)
    return (lambda request: cli.call(method, Raw(request), CALL_TIMEOUT_S)), cli.close


def interleaved_rates(phases: dict[str, Callable[[], object]], seconds: float, limit: int,
                      rounds: int = 4) -> dict[str, float]:
    """Calls/s of each phase, measured in `rounds` alternating slices of `seconds / rounds` each, so
    the load of a shared machine drifting during the run weighs on every phase alike."""
    calls = dict.fromkeys(phases, 0)
    spent = dict.fromkeys(phases, 0.0)
    for fn in phases.values():
        for _ in range(10):
            fn()
    for _ in range(rounds):
        for name, fn in phases.items():
            n = 0
            t0 = time.perf_counter()
            deadline = t0 + seconds / rounds
            while n < limit // rounds and time.perf_counter() < deadline:
                fn()
                n += 1
            calls[name] += n
            spent[name] += time.perf_counter() - t0
    return {name: calls[name] / spent[name] for name in phases}


def measure(seconds: float = 3.0, limit: int = 200_000, bulk_bytes: int = BULK_BYTES, framed: bool = True,
            server: TransportServer | None = None) -> dict:
    """The transport figures as a dict (the keys of `orbitmq bench transport --json`); every phase
    gets `seconds` in all, in slices alternating with the others."""
    from orbitmq.bench.transport_server import size_request

    if server is None:
        with TransportServer() as s:
            return measure(seconds, limit, bulk_bytes, framed, s)
    payload = b"x" * bulk_bytes
    want = size_request(bulk_bytes)
    mb = bulk_bytes / 1e6
    protocols = {"grpc": (grpc_call, server.grpc)}
    if framed:
        protocols["framed"] = (framed_call, server.framed)
    phases: dict[str, Callable[[], object]] = {}
    closers = []
    try:
        for proto, (make, addr) in protocols.items():
            for kind, method, request in (("empty", "Empty", b""), ("produce", "Sink", payload),
                                          ("consume", "Source", want)):
                call, close = make(addr, method)
                closers.append(close)
                phases[f"{proto}_{kind}"] = lambda call=call, request=request: call(request)
        rates = interleaved_rates(phases, seconds, limit)
    finally:
        for close in closers:
            close()
    out: dict = {"bulk_bytes": bulk_bytes, "seconds": seconds}
    for proto in protocols:
        out[f"{proto}_empty_call_per_s"] = round(rates[f"{proto}_empty"])
        out[f"{proto}_produce_mb_per_s"] = round(rates[f"{proto}_produce"] * mb, 1)
        out[f"{proto}_consume_mb_per_s"] = round(rates[f"{proto}_consume"] * mb, 1)
    if framed:
        out["framed_vs_grpc_empty"] = round(out["framed_empty_call_per_s"] / out["grpc_empty_call_per_s"], 2)
        out["framed_vs_grpc_produce"] = round(out["framed_produce_mb_per_s"] / out["grpc_produce_mb_per_s"], 2)
        out["framed_vs_grpc_consume"] = round(out["framed_consume_mb_per_s"] / out["grpc_consume_mb_per_s"], 2)
    return out


def run(args: argparse.Namespace) -> dict:
    return measure(args.seconds, args.calls, args.bulk_bytes, framed=not args.no_framed)
