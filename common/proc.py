"""Child OS processes: start an `orbitmq` subcommand, wait for it, stop it by PID.

Used by tests, benchmarks, the cluster launcher and the chaos suite. Every child gets its own
process group so a kill reaches its threads and nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    """One started process and where its output goes."""

    name: str
    popen: subprocess.Popen
    log_path: Path | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def kill9(self) -> None:
        """SIGKILL the whole process group and reap it."""
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.popen.poll()

    def log_tail(self, n: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def orbitmq_argv(*args: str) -> list[str]:
    """argv that runs `orbitmq ARGS` with this interpreter (no PATH lookup needed)."""
    return [sys.executable, "-m", "orbitmq.cli.main", *args]


def start(name: str, argv: list[str], log_path: Path | None = None, env: dict | None = None,
          cwd: str | Path | None = None) -> Child:
    """Start `argv` in its own process group, stdout+stderr to `log_path` (or inherited)."""
    out = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115
    try:
        popen = subprocess.Popen(
            argv,
            stdout=out if out else None,
            stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    finally:
        if out is not None:
            out.close()
    return Child(name=name, popen=popen, log_path=log_path, argv=argv)


def stop_all(children: list[Child], timeout: float = 10.0) -> None:
    """Stop every child (SIGTERM then SIGKILL), in reverse start order."""
    for c in reversed(children):
        try:
            c.stop(timeout=timeout)
        except Exception:  # noqa: BLE001 - best effort on teardown
            c.kill9()


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `pred()` until it returns a truthy value (returned) or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - the predicate may fail while things start
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))
