"""Replacing controllers on real processes (pysyncobj dynamic membership).

3 controllers and 3 stand-in broker agents (the real BrokerAgent, `python -m
orbitmq.controller.agent`) that were given only the first three addresses. A 4th node on a new
port joins with `orbitmq admin controller add-node`, an old one leaves with `remove-node` (it
stops taking part in Raft), a member whose data dir was wiped restarts empty and catches up from
the others, then the controller leader is killed: the remaining members (one of them the new node,
one the rejoined one) elect a leader, the agents learned the new controller list, and a dead
master is still replaced. A name server's voucher follows the list too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time

import pytest

from orbitmq.bench.election import AgentProc, ControllerCluster
from orbitmq.common import net, proc
from orbitmq.controller.client import ControllerClient, ControllerError

pytestmark = pytest.mark.process

CL = "DefaultCluster"
T = 90   # generous: two cores shared with other test runs


def wait(pred, timeout, what):
    return proc.wait_until(pred, timeout, 0.2, what)


def metadata(addr: str):
    async def go():
        c = ControllerClient([addr], rpc_timeout_s=3.0)
        try:
            return await c.get_metadata(addr)
        finally:
            await c.close()
    try:
        return asyncio.run(go())
    except ControllerError:
        return None


def leader_of(addrs: list[str]) -> str:
    for a in addrs:
        md = metadata(a)
        if md is not None and md.leader_address and md.leader_raft_address == md.self_raft_address \
                and md.liveness_ready:
            return a
    return ""


def view(addrs: list[str], bset: str):
    async def go():
        c = ControllerClient(addrs, rpc_timeout_s=3.0, retry_deadline_s=10.0)
        try:
            return await c.get_replica_info(CL, bset)
        finally:
            await c.close()
    return asyncio.run(go())


def admin(addrs: list[str], *args: str) -> tuple[int, str]:
    p = subprocess.run(proc.orbitmq_argv("admin", "controller", *args, "--controllers", ",".join(addrs)),
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def broker_id(a: AgentProc) -> int:
    ev = [e for e in a.events() if e.get("event") == "broker_id"]
    return ev[-1]["broker_id"] if ev else 0


@pytest.fixture
def group(tmp_path):
    c = ControllerCluster(tmp_path, 3)
    try:
        c.start_controllers()
        c.leader_index(60)
        yield c
    except BaseException:
        print(c.logs(60))
        raise
    finally:
        c.stop()


def start_node(c: ControllerCluster, name: str, listen: str, raft: str, peers: list[str]) -> proc.Child:
    """A controller node started with --join (same secret as the group)."""
    argv = proc.orbitmq_argv("controller", "--node-id", name, "--listen", listen, "--raft-addr", raft,
                             "--peers", ",".join(peers), "--data-dir", str(c.root / name), "--join",
                             "--raft-secret-file", str(c.root / "raft.secret"))
    child = proc.start(name, argv, log_path=c.root / f"{name}.log")
    c.children.append(child)
    net.wait_for_port(listen, 30)
    return child


def test_add_remove_rejoin_and_fail_over_through_the_new_membership(group):
    c = group
    agents = [c.add_agent(f"m{i}", "mb", max_offset=100 * i) for i in range(3)]
    for a in agents:
        c.start_agent(a)
    wait(lambda: len(view(c.addrs, "mb").sync_state_set) == 3, T, "sync-state-set of three")

    # -- a 4th node on a new port joins: quiet until added, then a full member --
    p_listen, p_raft = net.free_ports(2)
    d_listen, d_raft = f"127.0.0.1:{p_listen}", f"127.0.0.1:{p_raft}"
    start_node(c, "c3", d_listen, d_raft, c.raft)
    md = metadata(d_listen)
    assert md is not None and md.joining and not md.leader_address   # not a member yet: no leader known
    # while it waits to be added it never campaigns (its term stays 0), so it cannot depose the leader
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        assert metadata(d_listen).term == 0
        time.sleep(0.3)
    li, term = leader_of(c.addrs), metadata(c.addrs[0]).term
    rc, out = admin(c.addrs, "add-node", d_listen)
    assert rc == 0, out
    print(f"add-node: leader {li} term {term} -> leader {leader_of(c.addrs)} term {metadata(c.addrs[0]).term}")
    assert d_listen in out and "controllers = " in out
    all4 = sorted(c.addrs + [d_listen])
    for a in all4:
        wait(lambda a=a: sorted((metadata(a) or metadata(a)).controllers) == all4, T, f"{a} lists 4 controllers")
    assert not metadata(d_listen).joining
    # the agents were given three addresses; they learn the fourth from the controllers' answers
    for a in agents:
        wait(lambda a=a: d_listen in a.log.read_text(errors="replace"), T, f"agent {a.name} learns the new node")
    # adding it twice is refused with a clear code
    rc, out = admin(c.addrs, "add-node", d_listen, "--wait-s", "0")
    assert rc == 1 and "NODE_ALREADY_MEMBER" in out, out

    # -- an old follower leaves: it stops taking part, the others drop it from the list --
    li = leader_of(c.addrs)
    victim = next(a for a in c.addrs if a != li)
    rc, out = admin([d_listen], "remove-node", victim)
    assert rc == 0, out
    members = sorted(a for a in all4 if a != victim)
    for a in members:
        wait(lambda a=a: sorted(metadata(a).controllers) == members, T, f"{a} lists 3 controllers")
    wait(lambda: (metadata(victim) or metadata(victim)).retired, T, "the removed node knows it was removed")
    c.controllers[c.addrs.index(victim)].stop()
    rc, out = admin([d_listen], "remove-node", victim)
    assert rc == 1 and "NODE_NOT_MEMBER" in out, out

    # -- a member loses its data dir and rejoins empty --
    old = [a for a in c.addrs if a != victim]
    wiped = next(a for a in old if a != leader_of(members))
    wi = c.addrs.index(wiped)
    c.controllers[wi].kill9()
    shutil.rmtree(c.root / f"c{wi}")
    peers = [c.raft[j] for j in range(3) if j != wi and c.addrs[j] != victim] + [d_raft]
    c.controllers[wi] = start_node(c, f"c{wi}", wiped, c.raft[wi], peers)
    wait(lambda: (lambda m: m is not None and not m.joining and any(s.broker_set == "mb" for s in m.sets))(
        metadata(wiped)), T, "the wiped node caught up from the others")

    # -- the leader dies: the new node and the rejoined one are a majority and elect --
    li = leader_of(members)
    assert li
    if li == d_listen:
        wait(lambda: not metadata(d_listen).joining, T, "")
    killed = c.controllers[c.addrs.index(li)] if li in c.addrs else next(ch for ch in c.children if ch.name == "c3")
    killed.kill9()
    rest = [a for a in members if a != li]
    wait(lambda: leader_of(rest), T, "a leader among the remaining two")

    # -- a dead master is replaced through the new membership --
    v = view(rest, "mb")
    old_master, old_epoch = v.master_id, v.master_epoch
    victim_agent = next(a for a in agents if broker_id(a) == old_master)
    survivors = [a for a in agents if a is not victim_agent]
    victim_agent.child.pause()
    try:
        def told(a):
            r = a.last_role()
            return r is not None and r["master_epoch"] > old_epoch and r["master_id"] not in (0, old_master)
        wait(lambda: all(told(a) for a in survivors), T, "survivors told of the new master")
    finally:
        victim_agent.child.resume()
    hist = view(rest, "mb")
    assert hist.master_id not in (0, old_master) and hist.master_epoch > old_epoch

    # -- the dead node is removed too: a group of two that still commits --
    rc, out = admin(rest, "remove-node", li)
    assert rc == 0, out
    for a in rest:
        wait(lambda a=a: sorted(metadata(a).controllers) == sorted(rest), T, f"{a} lists 2 controllers")
    # it still commits: a new broker agent (given the original, partly dead list) registers
    late = c.add_agent("m9", "mb")
    c.start_agent(late)
    wait(lambda: len(view(rest, "mb").replicas) == 4 and broker_id(late) > 0, T, "a new replica registered")


def test_leader_removes_itself_and_name_server_voucher_follows(group):
    from orbitmq.namesrv.voucher import MasterVoucher

    c = group
    p_listen, p_raft = net.free_ports(2)
    new = f"127.0.0.1:{p_listen}"
    start_node(c, "c3", new, f"127.0.0.1:{p_raft}", c.raft)
    rc, out = admin(c.addrs, "add-node", new)
    assert rc == 0, out

    async def learned(v: MasterVoucher, want: list[str]) -> list[str]:
        for _ in range(150):
            await v.refresh()
            if sorted(v.client.addresses) == sorted(want):
                break
            await asyncio.sleep(0.2)
        return sorted(v.client.addresses)

    async def go() -> None:
        v = MasterVoucher(c.addrs[:1], rpc_timeout_s=3.0)
        try:
            assert await learned(v, c.addrs + [new]) == sorted(c.addrs + [new])
            # the leader is removed: it hands leadership over first, the new leader removes it
            li = await asyncio.to_thread(leader_of, c.addrs + [new])
            rc, out = await asyncio.to_thread(admin, c.addrs, "remove-node", li)
            assert rc == 0, out
            rest = sorted(a for a in c.addrs + [new] if a != li)
            assert await learned(v, rest) == rest
            assert await asyncio.to_thread(wait, lambda: leader_of(rest), T, "a leader among the other three")
            md = await asyncio.to_thread(wait, lambda: metadata(li), T, "the removed node answers")
            assert md.retired or sorted(md.controllers) == rest
        finally:
            await v.close()

    asyncio.run(go())


def test_add_node_to_a_lone_node_without_a_raft_secret_is_refused(tmp_path):
    lone, lone_raft, new, new_raft = (f"127.0.0.1:{p}" for p in net.free_ports(4))
    env = {k: v for k, v in os.environ.items() if k != "ORBITMQ_RAFT_SECRET"}
    children = [proc.start("lone", proc.orbitmq_argv("controller", "--listen", lone, "--raft-addr", lone_raft,
                                                     "--data-dir", str(tmp_path / "lone")),
                           log_path=tmp_path / "lone.log", env=env)]
    try:
        (tmp_path / "raft.secret").write_text("s" * 32)
        children.append(proc.start("new", proc.orbitmq_argv(
            "controller", "--listen", new, "--raft-addr", new_raft, "--peers", lone_raft, "--join",
            "--data-dir", str(tmp_path / "new"), "--raft-secret-file", str(tmp_path / "raft.secret")),
            log_path=tmp_path / "new.log", env=env))
        for a in (lone, new):
            net.wait_for_port(a, 30)
        wait(lambda: leader_of([lone]), T, "the lone node leads")
        rc, out = admin([lone], "add-node", new, "--wait-s", "0")
        assert rc == 1 and "MEMBERSHIP_CHANGE_FAILED" in out and "random Raft secret" in out, out
        assert sorted(metadata(lone).controllers) == [lone]
    finally:
        proc.stop_all(children, timeout=10)
