"""Processes of a detached cluster, known only by PID (the starting process may be gone).

Owns: starting a child in its own session (it survives the command that started it), and
checking and signalling it later by PID. A PID is trusted only together with its start time
(from /proc), so a recycled PID is never signalled; a zombie counts as dead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from orbitmq.common import proc

_popens: dict[int, subprocess.Popen] = {}   # children of this process, reaped when seen dead


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def alive(pid: int | None, started: int | None) -> bool:
    """True if `pid` runs and is the process that started at `started` (not a zombie)."""
    if not pid:
        return False
    p = _popens.get(pid)
    if p is not None and p.poll() is not None:
        _popens.pop(pid, None)
        return False
    st = start_time(pid)
    return st is not None and (started is None or st == started)


def start(name: str, argv: list[str], log_path: Path, env: dict | None = None) -> tuple[int, int | None]:
    """Start `argv` detached (own session, output appended to `log_path`); returns (pid, start time)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child = proc.start(name, argv, log_path=log_path, env=env)
    _popens[child.pid] = child.popen
    return child.pid, start_time(child.pid)


def send(pid: int | None, started: int | None, sig: int) -> bool:
    """Signal the process group of `pid` if it is still that process; False if it is gone."""
    if not alive(pid, started):
        return False
    try:
        os.killpg(pid, sig)   # its own session: group id == pid
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, sig)
    return True


def wait_dead(pid: int | None, started: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid, started):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(pid: int | None, started: int | None, timeout: float = 10.0) -> None:
    """SIGCONT + SIGTERM, then SIGKILL after `timeout`; returns once it is gone."""
    if not alive(pid, started):
        return
    send(pid, started, signal.SIGCONT)
    send(pid, started, signal.SIGTERM)
    if not wait_dead(pid, started, timeout):
        send(pid, started, signal.SIGKILL)
        wait_dead(pid, started, 10.0)


def kill9(pid: int | None, started: int | None) -> None:
    """SIGKILL and wait until it is gone."""
    if send(pid, started, signal.SIGKILL):
        wait_dead(pid, started, 10.0)
