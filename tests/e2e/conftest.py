"""End-to-end fixtures: a real name server and real brokers (separate processes on loopback),
plus helpers to run `orbitmq produce` / `orbitmq consume` as separate processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orbitmq.common import net
from orbitmq.common.proc import wait_until

FAST_BROKER = ["--set", "register_interval_s=0.5", "--set", "keepalive_interval_s=0.3",
               "--set", "consumer_expire_s=5"]


class Cluster:
    """One name server and N standalone brokers (one broker set each)."""

    def __init__(self, procs, tmp_path: Path) -> None:
        self.procs = procs
        self.tmp = tmp_path
        self.namesrv = f"127.0.0.1:{net.free_port()}"
        self.brokers: dict[str, tuple[object, str, list[str]]] = {}
        procs.start("namesrv", ["namesrv", "--listen", self.namesrv, "--set", "scan_interval_s=0.2"])
        net.wait_for_port(self.namesrv, 30)

    def start_broker(self, bset: str, extra: list[str] | None = None, addr: str | None = None):
        addr = addr or f"127.0.0.1:{net.free_port()}"
        args = ["broker", "--listen", addr, "--namesrv", self.namesrv, "--store-dir", str(self.tmp / f"store-{bset}"),
                "--cluster", "c1", "--broker-set", bset, "--broker-id", "0", *FAST_BROKER, *(extra or [])]
        child = self.procs.start(f"broker-{bset}", args)
        net.wait_for_port(addr, 30)
        self.brokers[bset] = (child, addr, extra or [])
        from orbitmq.client import Admin

        with Admin(self.namesrv) as admin:
            wait_until(lambda: any(r.broker_set == bset and r.master_address == addr for r in admin.cluster_list()),
                       20, what=f"broker {bset} registered")
        return child, addr

    def restart_broker(self, bset: str, kill: bool = False):
        child, addr, extra = self.brokers[bset]
        if kill:
            child.kill9()
        else:
            child.stop()
        return self.start_broker(bset, extra, addr)

    def create_topic(self, topic: str, queues: int = 4, **kw) -> None:
        from orbitmq.client import Admin

        with Admin(self.namesrv) as admin:
            admin.create_topic(topic, queues, **kw)

    def produce(self, topic: str, count: int, name: str = "producer", extra: list[str] | None = None):
        ids = self.tmp / f"{name}.ids"
        child = self.procs.start(name, ["produce", "--namesrv", self.namesrv, "--topic", topic, "--count", str(count),
                                        "--ids-out", str(ids), *(extra or [])])
        return child, ids

    def consume(self, group: str, topic: str, name: str, extra: list[str] | None = None):
        out = self.tmp / f"{name}.out"
        child = self.procs.start(name, ["consume", "--namesrv", self.namesrv, "--group", group, "--topic", topic,
                                        "--out", str(out), "--rebalance-interval", "0.5",
                                        "--commit-interval", "0.5", *(extra or [])])
        return child, out


def read_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]


def wait_exit(child, timeout: float) -> int:
    wait_until(lambda: not child.alive(), timeout, what=f"{child.name} to exit")
    return child.popen.returncode


def last_assignment(child) -> list[str] | None:
    lines = [ln for ln in (child.log_path.read_text(errors="replace") if child.log_path.exists() else "").splitlines()
             if ln.startswith("ASSIGNMENT ")]
    return json.loads(lines[-1][len("ASSIGNMENT "):]) if lines else None


def summary(child) -> dict:
    for ln in reversed(child.log_path.read_text(errors="replace").splitlines()):
        if re.match(r"^\{.*\}$", ln.strip()):
            return json.loads(ln)
    raise AssertionError(f"no JSON summary in {child.name}'s output")


def wait_stable(self, children, n_queues: int, group: str, timeout: float = 30.0) -> None:
    """Until every broker's member list of `group` is exactly these consumers and their latest
    assignments cover `n_queues` queues, each exactly once.

    Consumers compute their share from (member list, queues) alone, so once every broker reports the
    same members as are running and the shares cover every queue once, no consumer has a reason to
    change its mind until membership changes: nothing to sleep for."""
    from orbitmq.client import Admin
    from orbitmq.protos import broker_pb2

    def members_settled(admin) -> bool:
        for _, addr, _ in self.brokers.values():
            resp = admin.transport.call_broker(addr, "GetConsumerList", broker_pb2.GetConsumerListRequest(group=group))
            if len(resp.client_ids) != len(children):
                return False
        return True

    def ok(admin) -> bool:
        parts = [last_assignment(c) for c in children]
        if any(p is None for p in parts):
            return False
        flat = [q for p in parts for q in p]
        return (len(flat) == n_queues and len(set(flat)) == n_queues and all(parts)
                and members_settled(admin))
    with Admin(self.namesrv) as admin:
        wait_until(lambda: ok(admin), timeout, what=f"group {group}: every broker sees {len(children)} members "
                                                    f"and their assignments cover {n_queues} queues once")


Cluster.read_ids = staticmethod(read_ids)
Cluster.wait_exit = staticmethod(wait_exit)
Cluster.last_assignment = staticmethod(last_assignment)
Cluster.summary = staticmethod(summary)
Cluster.wait_stable = wait_stable


@pytest.fixture
def cluster(procs, tmp_path):
    """A name server; start brokers with `cluster.start_broker(name)`. Helpers hang on the object."""
    return Cluster(procs, tmp_path)
