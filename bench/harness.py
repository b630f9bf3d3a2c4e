"""Benchmark plumbing shared by the client benchmarks: start a name server, a broker and the echo
helper as real processes in a temporary directory, measure bounded loops, stop everything by PID."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orbitmq.common import net, proc
from orbitmq.common.tls import TlsConfig
from orbitmq.common.tls_grpc import channel as tls_channel

ECHO_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


class ChildServer:
    """A helper server (`python -m MODULE --listen ADDR ARGS...`) as a child process on a free
    loopback port, stopped by PID on `close()` or leaving the `with` block."""

    def __init__(self, name: str, module: str, log_path: Path, *args: str) -> None:
        self.addr = f"127.0.0.1:{net.free_port()}"
        self.child = proc.start(name, [sys.executable, "-m", module, "--listen", self.addr, *args], log_path=log_path)
        net.wait_for_port(self.addr, 30)

    def close(self) -> None:
        proc.stop_all([self.child])

    def __enter__(self):  # noqa: ANN204 - the subclass itself
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BenchCluster:
    """namesrv + one broker (+ echo server), torn down on exit."""

    def __init__(self, flush_mode: str = "async", tls: bool = False, remoting: bool = False) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="orbitmq-bench-"))
        self.children: list[proc.Child] = []
        self.flush_mode = flush_mode
        self.tls = tls
        self.client_tls: TlsConfig | bool = False   # what clients of this cluster dial with
        self.remoting = remoting   # the broker also serves the framed protocol (clients then use it unless told grpc)
        self.broker_child: proc.Child | None = None

    def _tls_args(self, name: str) -> list[str]:
        """With `tls`: certificates from a throwaway CA, so the name server and broker serve TLS."""
        if not self.tls:
            return []
        from orbitmq.common.tls_certs import write_cluster_certs

        cert, key = write_cluster_certs(self.tmp / "tls", {name: []})[name]
        ca = str(self.tmp / "tls" / "ca.pem")
        self.client_tls = TlsConfig(ca_file=ca)
        return ["--set", f"tls_cert_file={cert}", "--set", f"tls_key_file={key}", "--set", f"tls_ca_file={ca}"]

    def __enter__(self) -> BenchCluster:
        try:
            self.namesrv = f"127.0.0.1:{net.free_port()}"
            self._start("namesrv", proc.orbitmq_argv("namesrv", "--listen", self.namesrv, *self._tls_args("namesrv")))
            net.wait_for_port(self.namesrv, 30)
            self.broker = f"127.0.0.1:{net.free_port()}"
            self.broker_child = self._start("broker", proc.orbitmq_argv(
                "broker", "--listen", self.broker, "--namesrv", self.namesrv, "--store-dir", str(self.tmp / "store"),
                "--broker-set", "bench-a", "--set", f"flush_mode={self.flush_mode}",
                "--set", "register_interval_s=1", "--set", "keepalive_interval_s=0.5", "--set", "log_level=WARNING",
                *self._tls_args("broker"),
                *(["--set", "remoting_listen=127.0.0.1:0"] if self.remoting else [])))
            self.echo = f"127.0.0.1:{net.free_port()}"
            self._start("echo", [sys.executable, "-m", "orbitmq.bench.echo_server", "--listen", self.echo])
            net.wait_for_port(self.broker, 30)
            net.wait_for_port(self.echo, 30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, name: str, argv: list[str]) -> proc.Child:
        c = proc.start(name, argv, log_path=self.tmp / f"{name}.log")
        self.children.append(c)
        return c

    def create_topic(self, topic: str, queues: int) -> None:
        from orbitmq.client import Admin

        with Admin(self.namesrv, tls=self.client_tls) as admin:
            proc.wait_until(lambda: admin.cluster_list(), 20, what="broker registered")
            admin.create_topic(topic, queues)

    def __exit__(self, *exc: object) -> None:
        proc.stop_all(self.children)
        shutil.rmtree(self.tmp, ignore_errors=True)


def grpc_empty_calls_per_s(addr: str, seconds: float, limit: int) -> float:
    """Sync unary calls with an empty request on one channel, like the client's sync send."""
    from orbitmq.bench.echo_server import METHOD

    with tls_channel(addr, False, options=ECHO_OPTIONS) as ch:
        call = ch.unary_unary(METHOD)
        return rate(lambda: call(b"", timeout=10), seconds, limit)


def rate(fn: Callable[[], object], seconds: float, limit: int, per_call: int = 1, warmup: int = 50) -> float:
    """Calls of `fn` per second (times `per_call`), bounded by count and time, after a warm-up."""
    for _ in range(warmup):
        fn()
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while n < limit and time.perf_counter() < deadline:
        fn()
        n += per_call
    return n / (time.perf_counter() - t0)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far (Linux /proc)."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]
