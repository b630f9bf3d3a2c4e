"""`orbitmq cluster` as a tool, real processes: up (detached) / status / kill / pause / resume /
restart / down, all through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orbitmq.chaos import cluster_procs
from orbitmq.common import net, proc

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
        again = cli("up", "--dir", str(d), timeout=60)
        assert again.returncode == 1 and "already running" in again.stderr

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

        # restart --wipe: an empty disk; the controllers forget the old identity, it copies everything again
        marker = d / old / "wiped-marker"
        marker.write_text("x")
        r = cli("restart", "--dir", str(d), old, "--wipe", timeout=120)
        assert r.returncode == 0, r.stderr
        assert not marker.exists()
        proc.wait_until(rejoined, 90, 0.5, f"wiped {old} back in the sync-state-set")
    finally:
        r = cli("down", "--dir", str(d), timeout=120)
    assert r.returncode == 0, r.stderr
    state = json.loads((d / "cluster.json").read_text())
    assert state["procs"] and not any(cluster_procs.alive(p["pid"], p["start_time"]) for p in state["procs"].values())
    assert cluster_procs.alive(pid, started) is False


def test_one_spec_file_for_two_hosts(tmp_path):
    """Fixed addresses make the cluster file a multi-host deployment: each host starts its own nodes
    (`up --only`); 127.0.0.2 plays the second host."""
    a = net.free_ports(3, "127.0.0.1")
    b = net.free_ports(4, "127.0.0.2")
    spec = tmp_path / "cluster.toml"
    spec.write_text(f"""
[cluster]
name = "TwoHosts"
controllers = 1
namesrvs = 1
replicas = 2
learners = 0

[cluster.nodes.c1]
listen = "127.0.0.1:{a[0]}"
raft_addr = "127.0.0.1:{a[1]}"
[cluster.nodes.n1]
listen = "127.0.0.1:{a[2]}"
[cluster.nodes.broker-a-1]
listen = "127.0.0.2:{b[0]}"
ha_listen = "127.0.0.2:{b[1]}"
[cluster.nodes.broker-a-2]
listen = "127.0.0.2:{b[2]}"
ha_listen = "127.0.0.2:{b[3]}"
""")
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    try:
        r = cli("up", "--dir", str(host_a), "--config", str(spec), "--only", "controllers,namesrvs", timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        r = cli("up", "--dir", str(host_b), "--config", str(spec), "--only", "broker-a", timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        state_a = json.loads((host_a / "cluster.json").read_text())
        state_b = json.loads((host_b / "cluster.json").read_text())
        assert set(state_a["procs"]) == {"c1", "n1"} and set(state_b["procs"]) == {"broker-a-1", "broker-a-2"}

        def full():
            s = status(host_b)["sets"]["broker-a"]
            return s if s["master"] and len(s["sss"]) == 2 else None

        s = proc.wait_until(full, 120, 0.5, "a master with both replicas in sync")
        assert s["master"] in ("broker-a-1", "broker-a-2")
        assert status(host_a)["sets"]["broker-a"]["master"] == s["master"]   # one cluster, seen from either host

        # down everywhere, then up again: the whole cluster restarts on its addresses with its data
        for h in (host_b, host_a):
            assert cli("down", "--dir", str(h), timeout=120).returncode == 0
        for h, only in ((host_a, "controllers,namesrvs"), (host_b, "broker-a")):
            r = cli("up", "--dir", str(h), "--config", str(spec), "--only", only, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads((host_b / "cluster.json").read_text())["nodes"] == state_b["nodes"]
        again = proc.wait_until(full, 120, 0.5, "a master again after the restart")
        assert again["epoch"] >= s["epoch"]       # the controller kept its state
    finally:
        for h in (host_b, host_a):
            if (h / "cluster.json").exists():
                cli("down", "--dir", str(h), timeout=120)
