"""The controller on real processes: 3 controller nodes (pysyncobj over loopback) and stand-in
broker agents (`python -m orbitmq.controller.agent`).

Shown: a master agent that stops heartbeating is replaced by a member of its sync-state-set and
the survivors are told; with unclean election off and no live member the set stays masterless
(and the history says so); a learner is never elected; SIGKILL of the controller leader gives a
new leader that keeps every committed change; a minority cannot commit; restarting every node
recovers the state without a spurious election.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time

import pytest

from orbitmq.bench.election import AgentProc, ControllerCluster
from orbitmq.common import proc
from orbitmq.controller.client import CommitTimeout, ControllerError, NoLeader

pytestmark = pytest.mark.process

CL = "DefaultCluster"


def _run(coro_fn, cluster: ControllerCluster, addrs: list[str] | None = None, **kw):
    async def go():
        c = cluster.client(addrs, **kw)
        try:
            return await coro_fn(c)
        finally:
            await c.close()
    return asyncio.run(go())


def view(cluster, bset):
    return _run(lambda c: c.get_replica_info(CL, bset), cluster, rpc_timeout_s=2.0)


def history(cluster, bset):
    return _run(lambda c: c.get_history(CL, bset), cluster, rpc_timeout_s=2.0)


def broker_id(a: AgentProc) -> int:
    ev = [e for e in a.events() if e.get("event") == "broker_id"]
    return ev[-1]["broker_id"] if ev else 0


def wait(pred, timeout, what):
    return proc.wait_until(pred, timeout, 0.1, what)


@contextlib.contextmanager
def running(c: ControllerCluster):
    """`c`'s controllers started with a leader elected; their logs printed if anything fails; stopped."""
    try:
        c.start_controllers()
        c.leader_index(60)
        yield c
    except BaseException:
        print(c.logs(40))
        raise
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running(ControllerCluster(tmp_path_factory.mktemp("controller"), 3)) as c:
        yield c


def test_follower_answers_not_leader_with_the_leaders_address(cluster):
    import grpc

    from orbitmq.protos import controller_pb2 as pb
    from orbitmq.protos import controller_pb2_grpc as pbg

    li = cluster.leader_index()
    follower = cluster.addrs[(li + 1) % 3]
    with grpc.insecure_channel(follower) as ch:
        with pytest.raises(grpc.RpcError) as e:
            pbg.ControllerStub(ch).GetReplicaInfo(pb.CtlGetReplicaInfoRequest(cluster=CL, broker_set="x"), timeout=5)
    md = dict(e.value.trailing_metadata())
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert md["orbitmq-error"] == "NOT_LEADER" and md["orbitmq-leader"] == cluster.addrs[li]
    # the client follows it transparently
    v = _run(lambda c: c.get_replica_info(CL, "x"), cluster, [follower])
    assert not v.exists


def test_dead_master_replaced_from_sync_state_set_and_survivors_told(cluster):
    agents = [cluster.add_agent(f"fo{i}", "fo", max_offset=100 * i) for i in range(3)]
    for a in agents:
        cluster.start_agent(a)
    wait(lambda: len(view(cluster, "fo").sync_state_set) == 3, 60, "sync-state-set of three")
    v = view(cluster, "fo")
    old_master, old_epoch = v.master_id, v.master_epoch
    victim = next(a for a in agents if broker_id(a) == old_master)
    survivors = [a for a in agents if a is not victim]
    victim.child.pause()          # stops heartbeating; its session stays open
    try:
        def told(a):
            r = a.last_role()
            return r is not None and r["master_epoch"] > old_epoch and r["master_id"] not in (0, old_master)
        wait(lambda: all(told(a) for a in survivors), 20, "survivors told of the new master")
        new = survivors[0].last_role()
        assert new["master_id"] in set(v.sync_state_set) - {old_master}
        assert all(a.last_role()["master_id"] == new["master_id"] for a in survivors)
        # the best-ranked survivor wins: equal epochs, the larger max offset
        best = max(survivors, key=lambda a: int(a.args[a.args.index("--max-offset") + 1]))
        assert new["master_id"] == broker_id(best)
        h = history(cluster, "fo")[-1]
        assert (h.master_id, h.master_epoch, h.old_master_id) == (new["master_id"], new["master_epoch"], old_master)
        assert f"master {old_master} lost" in h.reason and h.old_master_last_heartbeat_ms > 0
    finally:
        victim.child.resume()
    # the old master comes back and is told it follows
    wait(lambda: (victim.last_role() or {}).get("master_id") == new["master_id"], 20, "old master told")
    assert victim.last_role()["role"] == "follower"


def admin(cluster, *args: str) -> tuple[int, str]:
    p = subprocess.run(proc.orbitmq_argv("admin", "controller", *args, "--controllers", ",".join(cluster.addrs)),
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def test_admin_manual_switch_history_and_clean_refusal(cluster):
    wait(lambda: len(view(cluster, "fo").sync_state_set) == 3, 30, "fo set of three")
    rc, out = admin(cluster, "replicas", "fo", "--json")
    assert rc == 0, out
    v = json.loads(out)
    target = next(int(r["broker_id"]) for r in v["replicas"] if int(r["broker_id"]) != int(v["master_id"]))
    # a broker whose controller session is being re-established (a stalled session is cancelled by
    # its agent; the next heartbeat clears it) is refused as NOT_CANDIDATE until it heartbeats again
    answers = []

    def switched() -> bool:
        rc, out = admin(cluster, "elect", "fo", "--broker-id", str(target))
        answers.append(out)
        assert rc == 0 or "session closed" in out or (answers[1:] and "ALREADY_MASTER" in out), out
        return rc == 0 or "ALREADY_MASTER" in out
    wait(switched, 20, "manual switch accepted")
    after = view(cluster, "fo")
    assert after.master_id == target and after.master_epoch == int(v["master_epoch"]) + 1
    assert set(after.sync_state_set) == {int(x) for x in v["sync_state_set"]}   # the old master stays in
    rc, out = admin(cluster, "elect", "fo", "--broker-id", "99")
    assert rc == 1 and "NOT_CANDIDATE" in out
    rc, out = admin(cluster, "history", "--broker-set", "fo", "--json")
    assert rc == 0 and json.loads(out)[-1]["reason"] == f"manual switch to {target}"
    rc, out = admin(cluster, "clean", "fo", "--broker-id", str(target))
    assert rc == 1 and "BROKER_ALIVE" in out          # a live broker's data is never cleaned
    rc, out = admin(cluster, "metadata")
    assert rc == 0 and out.count("LEADER") == 1, out
    agents = [a for a in cluster.agents if a.broker_set == "fo"]
    wait(lambda: all((a.last_role() or {}).get("master_id") == target for a in agents), 10, "agents told")


def test_no_live_sync_state_set_member_means_no_master_when_unclean_is_off(cluster):
    first = cluster.add_agent("nc0", "nc", auto_sss=False)
    cluster.start_agent(first)
    wait(lambda: view(cluster, "nc").master_id == broker_id(first) != 0, 30, "first agent master")
    second = cluster.add_agent("nc1", "nc", auto_sss=False, max_offset=10**9)
    cluster.start_agent(second)
    wait(lambda: (second.last_role() or {}).get("master_id") == broker_id(first), 30, "second agent follows")
    v = view(cluster, "nc")
    assert list(v.sync_state_set) == [broker_id(first)]      # nobody added the second one
    first.child.kill9()
    # the scan's decision is the event: "no master" committed while the second broker was alive
    # (retries without a candidate commit nothing; that rule is tests/controller/test_leader_scan.py's)
    wait(lambda: view(cluster, "nc").master_epoch > v.master_epoch, 20, "the master's loss recorded")
    after = view(cluster, "nc")
    assert after.master_id == 0 and list(after.sync_state_set) == [broker_id(first)]
    h = history(cluster, "nc")
    assert h[-1].master_id == 0 and "unclean election is off" in h[-1].reason
    assert all(x.master_id != broker_id(second) for x in h)
    assert second.last_role()["master_id"] == 0 and second.last_role()["role"] == "none"
    # the failed election is retried: once the set's member is back it is master again, and told
    cluster.start_agent(first)
    wait(lambda: view(cluster, "nc").master_id == broker_id(first), 20, "old member re-elected")
    h = history(cluster, "nc")[-1]
    assert h.master_id == broker_id(first) and h.reason == "set had no master"
    wait(lambda: (second.last_role() or {}).get("master_id") == broker_id(first), 10, "follower told")


def test_learner_is_never_elected(cluster):
    learner = cluster.add_agent("ln0", "ln", learner=True, max_offset=10**12)
    cluster.start_agent(learner)
    wait(lambda: broker_id(learner) != 0 and learner.last_role() is not None, 30, "learner registered")
    # the first election is the event: the learner (far ahead by offset, so it would rank first)
    # is alive when the non-learner arrives; a learner elected meanwhile would stay master and
    # the wait below would fail
    normal = cluster.add_agent("ln1", "ln")
    cluster.start_agent(normal)
    wait(lambda: view(cluster, "ln").master_id == broker_id(normal) != 0, 30, "the non-learner elected")
    assert all(h.master_id != broker_id(learner) for h in history(cluster, "ln"))
    assert list(view(cluster, "ln").sync_state_set) == [broker_id(normal)]
    normal.child.kill9()
    wait(lambda: history(cluster, "ln")[-1].master_id == 0, 20, "master loss recorded")
    assert all(h.master_id != broker_id(learner) for h in history(cluster, "ln"))
    assert view(cluster, "ln").master_id == 0


def test_leader_sigkill_new_leader_keeps_committed_state(cluster):
    before = view(cluster, "fo")
    hist = history(cluster, "fo")
    li = cluster.leader_index()
    t0 = time.monotonic()
    cluster.controllers[li].kill9()
    others = [a for i, a in enumerate(cluster.addrs) if i != li]
    md = _run(lambda c: c.wait_leader(20), cluster, others)
    took = time.monotonic() - t0
    assert md.leader_address in others
    print(f"new leader serving after {took:.2f}s")
    after = _run(lambda c: c.get_replica_info(CL, "fo"), cluster, others)
    assert (after.master_id, after.master_epoch, list(after.sync_state_set), after.sss_epoch) == \
        (before.master_id, before.master_epoch, list(before.sync_state_set), before.sss_epoch)
    assert [r.broker_id for r in after.replicas] == [r.broker_id for r in before.replicas]
    h2 = _run(lambda c: c.get_history(CL, "fo"), cluster, others)
    assert [(h.master_epoch, h.master_id) for h in h2] == [(h.master_epoch, h.master_id) for h in hist]
    # a new command commits on the new leader
    r = _run(lambda c: c.apply_broker_id(CL, "extra", 1, "k1"), cluster, others)
    assert r.ok
    cluster.start_controller(li)   # back for the next tests (same data dir)
    wait(lambda: _run(lambda c: c.get_metadata(cluster.addrs[li]), cluster).leader_address != "", 30,
         "restarted node sees a leader")


@pytest.mark.parametrize("kept", ["follower", "leader"])
def test_minority_cannot_commit(cluster, kept):
    """Two of three nodes stopped (SIGSTOP): the one left, a follower or the old leader itself,
    commits nothing; callers get a clear error within bounded time, never a false success."""
    li = cluster.leader_index()
    keep = li if kept == "leader" else (li + 1) % 3
    stopped = [i for i in range(3) if i != keep]
    for i in stopped:
        cluster.controllers[i].pause()
    try:
        def leader_seen_by_keep() -> str:
            try:
                return _run(lambda c: c.get_metadata(cluster.addrs[keep]), cluster, [cluster.addrs[keep]],
                            rpc_timeout_s=2.0).leader_raft_address
            except ControllerError:
                return "?"

        if kept == "follower":   # the event: its Raft election timeout ran out, it has no leader
            wait(lambda: leader_seen_by_keep() == "", 30, "the follower lost its leader")
        t0 = time.monotonic()
        with pytest.raises((CommitTimeout, NoLeader)) as e:
            r = _run(lambda c: c.apply_broker_id(CL, f"minority-{kept}", 1, "m"), cluster, [cluster.addrs[keep]],
                     rpc_timeout_s=2.0, retry_deadline_s=4.0)
            alive = [(i, cluster.controllers[i].alive(), cluster.controllers[i].pid) for i in range(3)]
            pytest.fail(f"a minority answered {r!r} after {time.monotonic() - t0:.2f}s; kept {keep} (leader index "
                        f"{li}), stopped {stopped}; processes {alive}")
        assert e.value.code in ("NO_LEADER", "REPLICATION_TIMEOUT")
        assert time.monotonic() - t0 < 15
        wait(lambda: leader_seen_by_keep() == "", 30, "an isolated leader stepped down")
        with pytest.raises((CommitTimeout, NoLeader)):
            _run(lambda c: c.get_replica_info(CL, "fo"), cluster, [cluster.addrs[keep]],
                 rpc_timeout_s=2.0, retry_deadline_s=2.0)
    finally:
        for i in stopped:
            cluster.controllers[i].resume()
    cluster.leader_index(30)
    assert view(cluster, "fo").exists
    assert not view(cluster, "minority-follower").exists


@pytest.fixture
def calm_cluster(tmp_path):
    """A cluster of its own whose heartbeat timeout (10 s) outlasts any scheduling stall of a loaded
    machine: an election in the restart test below can then only come from lost state, never from a
    slow agent."""
    with running(ControllerCluster(tmp_path, 3, settings={"heartbeat_timeout_s": "10"})) as c:
        for i in range(3):
            c.start_agent(c.add_agent(f"fo{i}", "fo", max_offset=100 * i))
        _run(lambda cl: cl.apply_broker_id(CL, "extra", 1, "127.0.0.1:1"), c, rpc_timeout_s=5.0)
        yield c


def test_restart_of_every_node_recovers_state_without_spurious_election(calm_cluster):
    cluster = calm_cluster
    try:
        wait(lambda: len(view(cluster, "fo").sync_state_set) == 3, 60, "fo set settled")
    except TimeoutError:
        print(view(cluster, "fo"))
        for a in cluster.agents:
            print(a.name, a.log.read_text()[-3000:])
        raise
    before = view(cluster, "fo")
    hist = history(cluster, "fo")
    for c in cluster.controllers:
        c.kill9()
    for i in range(3):
        cluster.start_controller(i)
    cluster.leader_index(60)    # a leader that has rebuilt liveness (one heartbeat timeout)
    # every replica has heartbeated the new leader: from here its scan sees the master alive
    # (the exact timing, "no election after all controllers restart", is the simulator's
    # test_all_controllers_restart_without_an_election)
    wait(lambda: all(r.alive for r in view(cluster, "fo").replicas), 30, "replicas heartbeat the new leader")
    after = view(cluster, "fo")
    assert (after.master_id, after.master_epoch, list(after.sync_state_set)) == \
        (before.master_id, before.master_epoch, list(before.sync_state_set))
    assert [(h.master_epoch, h.master_id, h.reason) for h in history(cluster, "fo")] == \
        [(h.master_epoch, h.master_id, h.reason) for h in hist]
    assert view(cluster, "extra").exists     # committed on the earlier leader, still there
    assert all(r.alive for r in after.replicas)
