"""Processes known only by PID: start time guards against recycled PIDs, zombies count as dead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from orbitmq.chaos import cluster_procs


def test_alive_needs_the_same_start_time():
    me = os.getpid()
    started = cluster_procs.start_time(me)
    assert started is not None
    assert cluster_procs.alive(me, started)
    assert not cluster_procs.alive(me, started + 1)          # a recycled PID is another process
    assert not cluster_procs.alive(None, None)
    assert cluster_procs.send(me, started + 1, signal.SIGTERM) is False   # never signalled


def test_a_zombie_is_dead_and_stop_kills_a_process_group(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    started = cluster_procs.start_time(p.pid)
    assert cluster_procs.alive(p.pid, started)
    os.kill(p.pid, signal.SIGKILL)
    # not reaped yet: a zombie, which must not count as running
    cluster_procs.wait_dead(p.pid, started, 10)
    assert not cluster_procs.alive(p.pid, started)
    p.wait()
    pid, started = cluster_procs.start(
        "sleeper", [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                    "time.sleep(60)"], tmp_path / "sleeper.log")
    assert cluster_procs.alive(pid, started)
    cluster_procs.stop(pid, started, timeout=1.0)            # ignores SIGTERM: SIGKILL after the timeout
    assert not cluster_procs.alive(pid, started)
