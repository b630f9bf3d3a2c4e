"""Chaos mode, real processes and a real (embedded) Toxiproxy: every node-to-node link through its
own proxy; partitions of the master from the controllers, a one-way cut, a controller cut off
from the other two, and heal. One cluster for the whole module (`orbitmq cluster up --chaos`)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest

from orbitmq.chaos.cluster import ChaosCluster
from orbitmq.common import proc
from orbitmq.protos import broker_pb2, common_pb2
from orbitmq.protos import controller_pb2 as cpb
from orbitmq.protos import controller_pb2_grpc as cpbg

pytestmark = pytest.mark.process

SET = "broker-a"
TOPIC = "ChaosTopic"


def cli(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "cluster", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("chaos") / "cluster"
    r = cli("up", "--dir", str(d), "--chaos")
    c = None
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "through Toxiproxy" in r.stdout
        c = ChaosCluster.open(d)
        from orbitmq.client import Admin, OrbitError

        def create() -> bool:
            try:
                with Admin(c.namesrv_addrs) as admin:
                    admin.create_topic(TOPIC, queues=2)
                return True
            except OrbitError:
                return False

        proc.wait_until(create, 60, 0.5, f"topic {TOPIC} created")
        yield c
    finally:
        if c is not None:
            c.detach()    # the client dial map must not outlive the cluster (ports are reused)
        down = cli("down", "--dir", str(d), timeout=120)
        assert down.returncode == 0, down.stderr


@pytest.fixture(autouse=True)
def _healed(cluster):
    """Each test starts and ends with no network fault and a full sync-state-set."""
    cluster.heal()
    cluster.wait_ready(120)
    yield
    cluster.heal()


def send_ok(cluster: ChaosCluster, tries: int = 1) -> bool:
    """One sync send through the client links (name servers and brokers via their proxies)."""
    from orbitmq.client import Message, OrbitError, Producer

    with Producer(cluster.namesrv_addrs, send_timeout_s=4.0, retries=1, route_refresh_s=1.0) as p:
        for _ in range(tries):
            try:
                p.send(Message(TOPIC, b"chaos-" + uuid.uuid4().hex.encode()))
                return True
            except OrbitError:
                continue
    return False


def direct_send_error(cluster: ChaosCluster, broker: str) -> str | None:
    """Send straight to one broker (client link): None if acknowledged, else the error name."""
    from orbitmq.client import OrbitError
    from orbitmq.client.transport import Transport

    t = Transport(cluster.namesrv_addrs)
    try:
        req = broker_pb2.SendRequest(topic=TOPIC, queue_id=0, messages=[common_pb2.Message(
            topic=TOPIC, body=b"direct", msg_id=uuid.uuid4().hex)])
        t.call_broker(cluster.node(broker).addr, "SendMessage", req, timeout=4.0)
        return None
    except OrbitError as e:
        return getattr(e, "code", type(e).__name__)
    finally:
        t.close()


def established_peers(pid: int) -> set[str]:
    """Remote host:port of every established TCP connection of process `pid` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peers = set()
    for table in ("tcp", "tcp6"):   # gRPC uses IPv6 sockets with v4-mapped addresses
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "01" and f[9] in inodes:
                ip_hex, port_hex = f[2].split(":")
                ip_hex = ip_hex[-8:]   # IPv4, or the last 32 bits of a v4-mapped IPv6 address
                ip = ".".join(str(int(ip_hex[i:i + 2], 16)) for i in (6, 4, 2, 0))
                peers.add(f"{ip}:{int(port_hex, 16)}")
    return peers


def test_every_node_to_node_connection_goes_through_a_proxy(cluster):
    real = {a for n in cluster.nodes.values() for a in (n.addr, n.raft_addr, n.ha_addr) if a}
    proxies = {lk.listen for lk in cluster.links}
    used = set()
    for name in cluster.node_names():
        peers = established_peers(cluster.pid(name))
        assert not peers & real, f"{name} dials {peers & real} directly"
        used |= peers & proxies
    kinds = {lk.kind for lk in cluster.links if lk.listen in used}
    assert kinds == {"grpc", "ha", "raft"}, kinds


def test_master_cut_from_controllers_fences_itself_and_is_replaced(cluster):
    old = cluster.wait_master(SET)
    epoch = cluster.status()["sets"][SET]["epoch"]
    assert send_ok(cluster, tries=3)
    cluster.partition([old], ["controllers"])
    try:
        # the old master still reaches its followers and clients, but it must stop acknowledging
        err = proc.wait_until(lambda: direct_send_error(cluster, old) in ("FENCED", "NOT_MASTER") and
                              direct_send_error(cluster, old), 30, 0.3, f"{old} to refuse writes")
        new = cluster.wait_master(SET, 60, not_in=(old,))
        assert new in cluster.followers_of(SET) + [new] and new not in cluster.learners_of(SET)
        assert cluster.status()["sets"][SET]["epoch"] > epoch
        assert proc.wait_until(lambda: send_ok(cluster), 60, 0.5, "sends to succeed on the new master")
        assert direct_send_error(cluster, old) in ("FENCED", "NOT_MASTER"), err
    finally:
        cluster.heal()

    def rejoined():
        s = cluster.status()["sets"][SET]
        return s["master"] == new and old in s["sss"]

    proc.wait_until(rejoined, 90, 0.5, f"{old} back in the sync-state-set under {new}")
    st = cluster.broker_status(old)
    assert st is not None and st.role == "FOLLOWER"
    epochs = [h["epoch"] for h in cluster.controller_history() if h["broker_set"] == SET and h["master_id"]]
    assert len(epochs) == len(set(epochs)), "two masters in one epoch"


def test_one_way_cut_follower_to_master_through_the_cli(cluster):
    d = str(cluster.root)
    master = cluster.wait_master(SET)
    follower = cluster.followers_of(SET)[0]
    r = cli("partition", "--dir", d, follower, "/", master, "--one-way", timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        # only the bytes follower -> master are lost: upstream on the follower's link to the master
        # (its acks), downstream on the master's link to it (used if the roles swap); nothing else
        st = json.loads(cli("status", "--dir", d, "--json", timeout=60).stdout)
        assert st["faults"] == {f"{follower}->{master}": ["cut_upstream"], f"{master}->{follower}": ["cut_downstream"]}
        # the master hears no acks: the follower leaves the sync-state-set, sends go on without it
        def dropped():
            send_ok(cluster)
            s = cluster.status()["sets"][SET]
            return s["master"] == master and follower not in s["sss"] and len(s["sss"]) >= 2
        proc.wait_until(dropped, 60, 0.2, f"{follower} out of the sync-state-set")
        assert follower in cluster.status()["sets"][SET]["alive"]   # its controller links are fine
        assert send_ok(cluster, tries=3)
    finally:
        r = cli("heal", "--dir", d, timeout=60)
        assert r.returncode == 0, r.stderr
    assert cluster.faults() == {}
    proc.wait_until(lambda: follower in cluster.status()["sets"][SET]["sss"], 90, 0.5,
                    f"{follower} back in the sync-state-set")


def test_controller_cut_off_from_the_other_two_loses_leadership_and_sees_no_commits(cluster):
    ctl = [n for n in cluster.node_names() if n.startswith("c")]
    victim = proc.wait_until(cluster.controller_leader, 30, 0.2, "a controller leader")
    others = [c for c in ctl if c != victim]
    term = cluster.controller_metadata(victim)["term"]
    cluster.partition([victim], others)
    probe = f"probe-{uuid.uuid4().hex[:6]}"
    try:
        # the other two elect a leader among themselves, in a newer term
        new = proc.wait_until(lambda: (ld := cluster.controller_leader()) in others and ld, 30, 0.2,
                              "a new leader among the other two")
        assert cluster.controller_metadata(new)["term"] > term
        # the cut-off node gives up leadership (pysyncobj's "connected" flags are no proof either
        # way: a TCP handshake with a black-holing proxy succeeds, only the bytes vanish)
        proc.wait_until(lambda: cluster.controller_metadata(victim)["leader"] != victim, 30, 0.2,
                        f"{victim} to step down")
        stuck = cluster.controller_metadata(victim)["commit_index"]
        # the majority commits; the cut-off node never sees it
        def commit_probe():
            try:   # a fresh leader serves once it has announced itself (its first commit)
                return cpbg.ControllerStub(cluster._channel(cluster.node(new).addr)).ApplyBrokerId(
                    cpb.CtlApplyBrokerIdRequest(cluster=cluster.name, broker_set=probe, broker_id=1,
                                                check_code="probe"), timeout=10)
            except grpc.RpcError:
                return None

        reply = proc.wait_until(commit_probe, 30, 0.3, f"{new} to commit a command")
        assert reply.result.ok, reply
        key = f"{cluster.name}/{probe}"
        proc.wait_until(lambda: all(key in cluster.controller_metadata(c)["sets"] for c in others), 30, 0.2,
                        "the probe committed on the majority")
        cut_off = cluster.controller_metadata(victim)
        assert key not in cut_off["sets"] and cut_off["commit_index"] == stuck and cut_off["leader"] != victim
        assert cluster.controller_metadata(new)["commit_index"] > stuck
        assert send_ok(cluster, tries=3)   # brokers carry on with the new controller leader
    finally:
        cluster.heal()
    # healed: it reconnects, catches up with the commit and follows a leader again
    proc.wait_until(lambda: (m := cluster.controller_metadata(victim)) and f"{cluster.name}/{probe}" in m["sets"]
                    and m["leader"] is not None, 60, 0.3, f"{victim} to catch up after heal")


def test_flap_and_slow_a_client_link(cluster):
    import time

    master = cluster.wait_master(SET)
    cluster.flap_link("client", master)
    assert cluster.faults() == {f"client->{master}": ["flap_upstream"]}
    # every connection carrying the client's bytes to the master is reset: sends to it fail
    err = proc.wait_until(lambda: direct_send_error(cluster, master), 30, 0.3, "a reset send")
    assert err not in ("FENCED", "NOT_MASTER"), err
    cluster.heal()
    proc.wait_until(lambda: direct_send_error(cluster, master) is None, 30, 0.3, "sends after heal")
    cluster.slow_link("client", master, latency_ms=400)
    assert cluster.faults() == {f"client->{master}": ["slow_upstream"]}
    t0 = time.monotonic()
    assert proc.wait_until(lambda: direct_send_error(cluster, master) is None, 30, 0.3, "a slow send")
    assert time.monotonic() - t0 >= 0.4      # the injected delay, a lower bound only
