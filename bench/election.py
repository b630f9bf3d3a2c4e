"""`orbitmq bench election`: master failover time and controller command throughput, on real
processes it starts itself (3 controllers + stand-in broker agents of one broker set).

Each round kills (SIGKILL, or SIGSTOP with --signal stop) the set's master agent and measures
from the master's last heartbeat seen by the controller leader (recorded in the replicated
history) to the moment every surviving agent has been notified of the new master
(`election_*_s`: min/median/max), and to the election's commit (`detect_commit_*_s`). The killed
agent is restarted (same identity, same id) and rejoins the sync-state-set before the next round.
Then `commands_per_s`: idempotent ApplyBrokerId commands committed through Raft per second by
`--concurrency` concurrent callers (bounded by --commands and --seconds), and
`leader_failover_s`: SIGKILL of the controller leader until a command commits on the new one,
with `leader_failover_heartbeat_gap_max_s`: the longest gap between answered heartbeats of the
agents meanwhile (a master whose lease is shorter fences itself for the difference).

Also the harness used by tests/controller (ControllerCluster, AgentProc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from orbitmq.common import net, proc
from orbitmq.common.secrets_file import write_secret_file
from orbitmq.controller.client import ControllerClient


@dataclass
class AgentProc:
    name: str
    broker_set: str
    identity_dir: Path
    args: list[str]
    log: Path
    child: proc.Child | None = None
    broker_id: int = 0
    paused: bool = False
    extra: list[str] = field(default_factory=list)

    def events(self) -> list[dict]:
        out = []
        if not self.log.exists():
            return out
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def roles(self) -> list[dict]:
        return [e for e in self.events() if e.get("event") == "role"]

    def last_role(self) -> dict | None:
        r = self.roles()
        return r[-1] if r else None

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()


class ControllerCluster:
    """N controller processes (and stand-in broker agents) under `root`, on free loopback ports."""

    def __init__(self, root: Path, n: int = 3, settings: dict[str, str] | None = None) -> None:
        self.root = root
        ports = net.free_ports(2 * n)
        self.addrs = [f"127.0.0.1:{p}" for p in ports[:n]]
        self.raft = [f"127.0.0.1:{p}" for p in ports[n:]]
        self.settings = settings or {}
        self.controllers: list[proc.Child | None] = [None] * n
        self.agents: list[AgentProc] = []
        self.children: list[proc.Child] = []

    def controller_argv(self, i: int) -> list[str]:
        args = ["controller", "--node-id", f"c{i}", "--listen", self.addrs[i], "--raft-addr", self.raft[i],
                "--peers", ",".join(self.raft[:i] + self.raft[i + 1:]), "--data-dir", str(self.root / f"c{i}"),
                "--raft-secret-file", str(write_secret_file(self.root / "raft.secret"))]
        for k, v in self.settings.items():
            args += ["--set", f"{k}={v}"]
        return proc.orbitmq_argv(*args)

    def start_controller(self, i: int) -> None:
        c = proc.start(f"c{i}", self.controller_argv(i), log_path=self.root / f"c{i}.log")
        self.controllers[i] = c
        self.children.append(c)

    def start_controllers(self, wait: bool = True) -> None:
        for i in range(len(self.addrs)):
            self.start_controller(i)
        if wait:
            for a in self.addrs:
                net.wait_for_port(a, 30)

    def client(self, addrs: list[str] | None = None, **kw: float) -> ControllerClient:
        return ControllerClient(addrs or self.addrs, **kw)

    def leader_index(self, timeout: float = 30.0) -> int:
        async def find() -> int:
            c = self.client()
            try:
                md = await c.wait_leader(timeout)
                return self.addrs.index(md.leader_address)
            finally:
                await c.close()
        return asyncio.run(find())

    def add_agent(self, name: str, broker_set: str, broker_id: int = 0, learner: bool = False,
                  max_offset: int = 0, auto_sss: bool = True, heartbeat_s: float = 0.3,
                  extra: list[str] | None = None) -> AgentProc:
        port = net.free_port()
        args = [sys.executable, "-m", "orbitmq.controller.agent", "--controllers", ",".join(self.addrs),
                "--broker-set", broker_set, "--address", f"127.0.0.1:{port}", "--ha-address", f"127.0.0.1:{port}",
                "--identity-dir", str(self.root / name), "--max-offset", str(max_offset),
                "--heartbeat-s", str(heartbeat_s), "--log-level", "INFO"]
        if broker_id:
            args += ["--broker-id", str(broker_id)]
        if learner:
            args.append("--learner")
        if auto_sss:
            args.append("--auto-sss")
        a = AgentProc(name, broker_set, self.root / name, args + list(extra or []), self.root / f"{name}.log")
        self.agents.append(a)
        return a

    def start_agent(self, a: AgentProc) -> None:
        a.child = proc.start(a.name, a.args, log_path=a.log)
        self.children.append(a.child)

    def stop(self) -> None:
        proc.stop_all(self.children, timeout=5)

    def logs(self, n: int = 30) -> str:
        return "\n".join(f"--- {c.name} (pid {c.pid}) ---\n{c.log_tail(n)}" for c in self.children)


# ---- the benchmark ---------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=5, help="master kills (bounded: at most 50)")
    p.add_argument("--signal", choices=["kill", "stop"], default="kill", help="SIGKILL or SIGSTOP the master")
    p.add_argument("--agents", type=int, default=3, help="replicas in the broker set")
    p.add_argument("--commands", type=int, default=3000, help="throughput phase: at most this many commands")
    p.add_argument("--seconds", type=float, default=10.0, help="throughput phase: at most this long")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="controller setting")
    p.add_argument("--root", default=None, help="working directory (default: a temporary one)")


def _summary(xs: list[float], prefix: str) -> dict[str, float | None]:
    if not xs:
        return {f"{prefix}_min_s": None, f"{prefix}_median_s": None, f"{prefix}_max_s": None}
    return {f"{prefix}_min_s": round(min(xs), 3), f"{prefix}_median_s": round(statistics.median(xs), 3),
            f"{prefix}_max_s": round(max(xs), 3)}


def run(args: argparse.Namespace) -> dict:
    settings = dict(kv.split("=", 1) for kv in args.set)
    with tempfile.TemporaryDirectory(prefix="orbitmq-bench-election-") as tmp:
        root = Path(args.root or tmp)
        root.mkdir(parents=True, exist_ok=True)
        cluster = ControllerCluster(root, 3, settings)
        try:
            return _run(cluster, args)
        finally:
            cluster.stop()


def _wait(pred, timeout: float, what: str):
    return proc.wait_until(pred, timeout, 0.05, what)


def _run(cluster: ControllerCluster, args: argparse.Namespace) -> dict:
    cluster.start_controllers()
    cluster.leader_index(60)
    bset = "bench"
    agents = [cluster.add_agent(f"agent{i}", bset, max_offset=1000 + i) for i in range(max(2, args.agents))]
    for a in agents:
        cluster.start_agent(a)

    async def view():
        c = cluster.client(rpc_timeout_s=2.0)
        try:
            return await c.get_replica_info("DefaultCluster", bset)
        finally:
            await c.close()

    async def history():
        c = cluster.client(rpc_timeout_s=2.0)
        try:
            return await c.get_history("DefaultCluster", bset)
        finally:
            await c.close()

    n = len(agents)
    _wait(lambda: len(asyncio.run(view()).sync_state_set) == n, 60, "sync-state-set of every agent")
    elections: list[float] = []
    commits: list[float] = []
    failures = 0
    for _ in range(min(args.rounds, 50)):
        v = asyncio.run(view())
        by_id = {}
        for a in agents:
            ev = [e for e in a.events() if e.get("event") == "broker_id"]
            if ev:
                by_id[ev[-1]["broker_id"]] = a
        victim = by_id[v.master_id]
        old_epoch = v.master_epoch
        survivors = [a for a in agents if a is not victim]
        if args.signal == "kill":
            victim.child.kill9()
        else:
            victim.child.pause()
        try:
            def told(a: AgentProc, old_epoch: int = old_epoch) -> dict | None:
                for e in a.roles():
                    if e["master_epoch"] > old_epoch and e["master_id"]:
                        return e
                return None
            _wait(lambda s=survivors, f=told: all(f(a) for a in s), 30, "survivors told of a new master")
            h = [x for x in asyncio.run(history()) if x.master_epoch > old_epoch]
            if not h or not h[0].old_master_last_heartbeat_ms:
                failures += 1
            else:
                last_hb = h[0].old_master_last_heartbeat_ms / 1000.0
                notified = max(told(a)["t"] for a in survivors)
                elections.append(notified - last_hb)
                commits.append(h[0].time_ms / 1000.0 - last_hb)
        except TimeoutError:
            failures += 1
        finally:
            if args.signal == "kill":
                cluster.start_agent(victim)
            else:
                victim.child.resume()
        _wait(lambda: len(asyncio.run(view()).sync_state_set) == n, 60, "the old master back in the set")

    cps, committed = asyncio.run(_throughput(cluster, args))
    t_kill = time.time()
    leader_s = asyncio.run(_leader_failover(cluster))
    time.sleep(2.0)   # sessions settle on the new leader
    gaps = [e["gap_s"] for a in agents for e in a.events() if e.get("event") == "heartbeat_gap" and e["t"] >= t_kill]
    result: dict = {"rounds": len(elections), "failed_rounds": failures, "signal": args.signal,
                    "agents": n, "commands_per_s": round(cps, 1), "commands_committed": committed,
                    "leader_failover_s": None if leader_s is None else round(leader_s, 3),
                    "leader_failover_heartbeat_gap_max_s": max(gaps) if gaps else 0.0,
                    "heartbeat_timeout_s": float(cluster.settings.get("heartbeat_timeout_s", 2.5))}
    result.update(_summary(elections, "election"))
    result.update(_summary(commits, "detect_commit"))
    return result


async def _leader_failover(cluster: ControllerCluster) -> float | None:
    """SIGKILL the controller leader; seconds until a command commits on a new leader."""
    c = cluster.client(rpc_timeout_s=1.0, retry_deadline_s=30.0)
    try:
        md = await c.wait_leader(30)
        li = cluster.addrs.index(md.leader_address)
        t0 = time.monotonic()
        cluster.controllers[li].kill9()
        r = await c.apply_broker_id("DefaultCluster", "tp", 1, "bench-0")
        return time.monotonic() - t0 if r.ok else None
    finally:
        await c.close()


async def _throughput(cluster: ControllerCluster, args: argparse.Namespace) -> tuple[float, int]:
    c = cluster.client(rpc_timeout_s=5.0)
    try:
        await c.wait_leader(30)
        for k in range(args.concurrency):
            await c.apply_broker_id("DefaultCluster", "tp", k + 1, f"bench-{k}")
        done = 0
        limit = args.commands
        start = time.monotonic()
        end = start + args.seconds

        async def worker(k: int) -> None:
            nonlocal done
            while done < limit and time.monotonic() < end:
                r = await c.apply_broker_id("DefaultCluster", "tp", k + 1, f"bench-{k}")
                if r.ok:
                    done += 1

        await asyncio.gather(*(worker(k) for k in range(args.concurrency)))
        return done / max(1e-9, time.monotonic() - start), done
    finally:
        await c.close()

