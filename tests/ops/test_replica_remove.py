"""`orbitmq admin controller remove-replica` on real processes (issue 13): the master is refused
(hand off first), a live replica is refused (stop it first), a stopped one leaves the registry and
the sync-state-set while the master keeps acknowledging, and a removal below the set's minimum
replica rule (the controllers' `min_in_sync_replicas`) is refused with a clear error."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from orbitmq.bench.replication import SetClient
from orbitmq.common import proc
from orbitmq.common.local_cluster import ClusterSpec, LocalCluster

pytestmark = pytest.mark.process

SET = "rm"


def admin(c: LocalCluster, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ORBITMQ_CONTROLLERS": ",".join(c.controller_addrs),
           "ORBITMQ_CLUSTER_SECRET_FILE": c.cluster_secret()}
    return subprocess.run(proc.orbitmq_argv("admin", "controller", *args), env=env, capture_output=True, text=True,
                          timeout=60)


def registry(c: LocalCluster) -> tuple[set[int], set[int]]:
    out = admin(c, "replicas", SET, "--json")
    assert out.returncode == 0, out.stderr
    v = json.loads(out.stdout)
    return {int(r["broker_id"]) for r in v["replicas"]}, {int(x) for x in v.get("sync_state_set", [])}


def test_remove_replica_refusals_and_a_clean_decommission(tmp_path):
    spec = ClusterSpec(dir=str(tmp_path / "c"), broker_sets=[SET], replicas=3, learners=0, controllers=3, namesrvs=1,
                       controller_settings={"min_in_sync_replicas": "2"},
                       broker_settings={"register_interval_s": "5"})
    c = LocalCluster(spec)
    try:
        c.start()
        masters = c.wait_ready(120)
        master = masters[SET]
        mb = c.brokers[master]
        followers = [b for n, b in c.brokers.items() if n != master]
        client = SetClient(list(c.brokers.values()))
        client.wait_master(60)
        client.create_topic()
        client.send([b"before"])

        r = admin(c, "remove-replica", SET, "--broker-id", str(mb.broker_id))
        assert r.returncode == 1 and "IS_MASTER" in r.stderr and "hand mastership off" in r.stderr, r.stderr
        assert f"--broker-id {followers[0].broker_id}" in r.stderr or f"--broker-id {followers[1].broker_id}" \
            in r.stderr   # it names a member to hand off to
        r = admin(c, "remove-replica", SET, "--broker-id", str(followers[0].broker_id))
        assert r.returncode == 1 and "BROKER_ALIVE" in r.stderr and "stop it first" in r.stderr, r.stderr
        r = admin(c, "remove-replica", SET, "--broker-id", "9")
        assert r.returncode == 1 and "UNKNOWN_BROKER" in r.stderr, r.stderr

        gone, other = followers
        gone.child.stop()
        r = None

        def removed() -> bool:
            nonlocal r
            r = admin(c, "remove-replica", SET, "--broker-id", str(gone.broker_id))
            return r.returncode == 0   # refused BROKER_ALIVE until the controllers see it dead
        proc.wait_until(removed, 60, 0.5, "the stopped replica removed")
        assert "sync-state-set now" in r.stdout
        ids, sss = registry(c)
        assert ids == {mb.broker_id, other.broker_id} and sss == {mb.broker_id, other.broker_id}
        # the master adopts the smaller set and keeps acknowledging sends
        proc.wait_until(lambda: c.sync_state_set(master) == {mb.broker_id, other.broker_id}, 30, 0.2,
                        "the master's sync-state-set without the removed replica")
        for i in range(20):
            client.send([f"after-{i}".encode()])

        # the last follower is stopped too: removing it would leave 1 replica where 2 are required
        other.child.stop()
        def refused() -> bool:
            rr = admin(c, "remove-replica", SET, "--broker-id", str(other.broker_id))
            assert rr.returncode == 1
            return "BELOW_MIN_REPLICAS" in rr.stderr and "min in-sync replicas" in rr.stderr
        proc.wait_until(refused, 60, 0.5, "the removal below the minimum refused")
        assert registry(c)[0] == {mb.broker_id, other.broker_id}   # nothing changed
        client.close()
    except BaseException:
        print(c.logs(30))
        raise
    finally:
        c.stop()
