"""`orbitmq cluster` as a tool, real processes: up (detached) / status / kill / pause / resume /
restart / down, all through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orbitmq.chaos import cluster_procs
from orbitmq.common import proc

pytestmark = pytest.mark.process


def cli(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "cluster", *args], capture_output=True,
                          text=True, timeout=timeout)


def status(d: Path) -> dict:
    r = cli("status", "--dir", str(d), "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_without_a_cluster_is_a_clear_error(tmp_path):
    r = cli("status", "--dir", str(tmp_path), timeout=60)
    assert r.returncode == 1 and "no cluster in" in r.stderr


def test_up_status_faults_down(tmp_path):
    d = tmp_path / "c"
    try:
        r = cli("up", "--dir", str(d))
        assert r.returncode == 0, r.stdout + r.stderr
        for name in ("c1", "c2", "c3", "n1", "n2", "broker-a-1", "broker-a-4"):
            assert name in r.stdout
        assert "controller leader: c" in r.stdout and "sync-state-set" in r.stdout
        # the command returned; every process keeps running without it
        st = status(d)
        assert all(st["processes"].values()) and len(st["processes"]) == 9
        assert st["controller_leader"] in ("c1", "c2", "c3")
        a = st["sets"]["broker-a"]
        assert a["master"] and len(a["sss"]) == 3 and a["learners"] == ["broker-a-4"]
        assert set(a["lag"]) == {"broker-a-1", "broker-a-2", "broker-a-3", "broker-a-4"} - {a["master"]}
        epoch, old = a["epoch"], a["master"]
        env = (d / "cluster.env").read_text()
        assert "ORBITMQ_NAMESRV=" in env and "ORBITMQ_CONTROLLERS=" in env

        # kill -9 the master: a new one in a newer epoch
        assert cli("kill", "--dir", str(d), old, timeout=60).returncode == 0

        def new_master():
            s = status(d)["sets"]["broker-a"]
            return s if s["master"] not in (None, old) and s["epoch"] > epoch else None

        after = proc.wait_until(new_master, 60, 0.5, "a new master after kill -9")
        assert after["master"] != "broker-a-4"            # never the learner
        assert status(d)["processes"][old] is False

        # pause / resume a controller: the process is stopped, then runs again
        state = json.loads((d / "cluster.json").read_text())
        pid, started = state["procs"]["c3"]["pid"], state["procs"]["c3"]["start_time"]
        assert cli("pause", "--dir", str(d), "c3", timeout=60).returncode == 0
        assert Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "T"
        assert cli("resume", "--dir", str(d), "c3", timeout=60).returncode == 0
        assert Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "T"

        # restart the old master keeping its data: it rejoins as a follower, back in the set
        r = cli("restart", "--dir", str(d), old, timeout=120)
        assert r.returncode == 0, r.stderr

        def rejoined():
            s = status(d)["sets"]["broker-a"]
            return s if old in s["sss"] and s["master"] != old and len(s["sss"]) == 3 else None

        proc.wait_until(rejoined, 90, 0.5, f"{old} back in the sync-state-set")
        assert (d / old / "controller-identity").exists()
    finally:
        r = cli("down", "--dir", str(d), timeout=120)
    assert r.returncode == 0, r.stderr
    state = json.loads((d / "cluster.json").read_text())
    assert state["procs"] and not any(cluster_procs.alive(p["pid"], p["start_time"]) for p in state["procs"].values())
    assert cluster_procs.alive(pid, started) is False
