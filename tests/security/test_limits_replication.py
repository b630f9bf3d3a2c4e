"""The replication port of a real master (1 controller, 1 name server, a set of 2 replicas and a
learner, real processes with the cluster secret): strangers, forged and replayed HELLOs, learner
claims, an id already connected, garbage and idle connections. The real follower keeps
streaming, sends keep being acknowledged, and the master's memory stays bounded. Last, the bound
on bytes held by sends waiting for their replicas (max_pending_send_bytes)."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import grpc
import pytest

from orbitmq.broker.ha import protocol as hp
from orbitmq.broker.ha.epochs import EpochEntry
from orbitmq.broker.ha.hello_check import sign_hello
from orbitmq.common import proc
from orbitmq.common.local_cluster import ClusterSpec, LocalCluster
from orbitmq.common.net import split_addr
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

pytestmark = pytest.mark.process
TOPIC = "ha-limits"


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class Set:
    def __init__(self, root: Path) -> None:
        spec = ClusterSpec(dir=str(root), broker_sets=["s"], controllers=1, namesrvs=1, replicas=2, learners=1,
                           broker_settings={"register_interval_s": "5", "ha_max_handshakes": "4",
                                            "max_pending_send_bytes": str(1 << 20)})
        self.c = LocalCluster(spec)
        self.c.start()
        self.master = self.c.wait_ready(120)["s"]
        self.secret = Path(self.c.cluster_secret()).read_text().strip().encode()
        self.follower = next(n for n, b in self.c.brokers.items() if not b.learner and n != self.master)
        self.learner = next(n for n, b in self.c.brokers.items() if b.learner)
        self.ch = grpc.insecure_channel(self.c.brokers[self.master].addr)
        self.stub = broker_pb2_grpc.BrokerStub(self.ch)
        proc.wait_until(self._create_topic, 30, 0.2, "topic created")
        # the learner streams too (the master logs its connection)
        lid = self.broker_id(self.learner)
        proc.wait_until(lambda: f"replica connected replica={lid} " in self.log_of(self.master), 60, 0.2,
                        "learner connected")

    def _create_topic(self) -> bool:
        self.stub.CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
            topic=TOPIC, read_queues=2, write_queues=2, perm=6)), timeout=5)
        return True

    def broker_id(self, name: str) -> int:
        st = self.c.status(name)
        assert st is not None
        return int(dict(st.stats)["ha_broker_id"])

    def send(self, n: int = 1) -> None:
        for i in range(n):
            self.stub.SendMessage(broker_pb2.SendRequest(topic=TOPIC, messages=[
                common_pb2.Message(topic=TOPIC, body=f"m{i}".encode())]), timeout=10)

    def ha_addr(self) -> tuple[str, int]:
        return split_addr(self.c.brokers[self.master].ha_addr)

    def log_of(self, name: str) -> str:
        return (self.c.logs_dir / f"{name}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def s(tmp_path_factory):
    st = Set(tmp_path_factory.mktemp("halimits"))
    try:
        yield st
    except BaseException:
        print(st.c.logs(60))
        raise
    finally:
        st.ch.close()
        st.c.stop()


def exchange(addr: tuple[str, int], data: bytes, timeout: float = 10.0) -> list[hp.Frame]:
    """Send `data`, return the frames the master answers until it closes (or the first WELCOME)."""
    dec = hp.FrameDecoder()
    out: list[hp.Frame] = []
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += dec.feed(chunk)
            if any(isinstance(f, hp.Welcome) for f in out):
                break
    return out


def refusal(frames: list[hp.Frame]) -> hp.Refuse:
    assert frames and isinstance(frames[0], hp.Refuse), f"expected a REFUSE, got {frames}"
    return frames[0]


def test_stranger_without_the_secret_gets_nothing(s):
    r = refusal(exchange(s.ha_addr(), hp.encode(hp.Hello(s.broker_id(s.follower) + 50, False, 0, ()))))
    assert r.code == "NO_PERMISSION" and "not signed" in r.message
    wrong = sign_hello(hp.Hello(77, False, 0, ()), b"not-the-cluster-secret!", int(time.time() * 1000))
    r = refusal(exchange(s.ha_addr(), hp.encode(wrong)))
    assert r.code == "NO_PERMISSION" and "bad signature" in r.message


def test_negative_fields_refused(s):
    now = int(time.time() * 1000)
    for h in (hp.Hello(-5, False, 0, ()), hp.Hello(3, False, -1, ()), hp.Hello(3, False, 0, (EpochEntry(-2, 0),))):
        r = refusal(exchange(s.ha_addr(), hp.encode(sign_hello(h, s.secret, now))))
        assert r.code == "BAD_REQUEST", r


def test_learner_claiming_full_replica_refused(s):
    lid = s.broker_id(s.learner)
    h = sign_hello(hp.Hello(lid, False, 0, ()), s.secret, int(time.time() * 1000))
    r = refusal(exchange(s.ha_addr(), hp.encode(h)))
    assert r.code == "NO_PERMISSION" and "learner" in r.message
    assert lid not in s.c.sync_state_set(s.master)


def test_forged_hello_with_a_connected_id_does_not_kick_the_real_follower(s):
    fid = s.broker_id(s.follower)
    ended_before = s.log_of(s.follower).count("replication session ended")
    # signed with the real secret: an insider, or a HELLO captured and re-signed; still refused
    forged = sign_hello(hp.Hello(fid, False, 0, ()), s.secret, int(time.time() * 1000))
    r = refusal(exchange(s.ha_addr(), hp.encode(forged)))
    assert r.code == "BROKER_BUSY" and "already connected" in r.message
    # the real follower keeps its stream: sends are acknowledged by the full set, no reconnection
    s.send(20)
    time.sleep(0.5)   # room for a (wrong) disconnect to show in the follower's log; not a timing assertion
    assert s.log_of(s.follower).count("replication session ended") == ended_before
    assert fid in s.c.sync_state_set(s.master)


def test_garbage_and_idle_connections_keep_master_memory_bounded(s):
    pid = s.c.brokers[s.master].child.pid
    before = rss_kib(pid)
    # 16 connections each announcing an 8 MiB frame and pushing 8 MiB of junk behind it
    socks = []
    sent = 0
    for _ in range(16):
        sock = socket.create_connection(s.ha_addr(), timeout=5)
        sock.settimeout(5)
        socks.append(sock)
        try:
            sock.sendall(struct.pack(">2sBBII", b"OH", 2, 1, 8 << 20, 0))
            chunk = b"\xab" * 65536
            for _ in range(128):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass   # the master closed it: what we want
    peak = rss_kib(pid)
    for sock in socks:
        sock.close()
    grown_mib = (peak - before) / 1024
    print(f"master RSS {before / 1024:.1f} -> {peak / 1024:.1f} MiB after 16 garbage connections "
          f"({sent / (1 << 20):.0f} MiB offered)")
    assert grown_mib < 24, f"master RSS grew {grown_mib:.1f} MiB"
    # idle connections fill the handshake slots (ha_max_handshakes = 4): the next is refused at once
    idle = [socket.create_connection(s.ha_addr(), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.3)   # let the master accept them (the refusal below is what is asserted)
        r = refusal(exchange(s.ha_addr(), b"", timeout=5))
        assert r.code == "BROKER_BUSY" and "handshakes" in r.message
    finally:
        for sock in idle:
            sock.close()
    # the master is fine: sends acknowledged by the whole set, the follower never left it
    s.send(5)
    assert s.broker_id(s.follower) in s.c.sync_state_set(s.master)


def test_handshake_timeout_closes_silent_peer(s):
    with socket.create_connection(s.ha_addr(), timeout=30) as sock:
        t0 = time.monotonic()
        sock.settimeout(30)
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b""   # closed by the master (ha_handshake_timeout_s, 5 s), nothing sent to us
        assert time.monotonic() - t0 < 29


def test_sends_waiting_for_replicas_hold_a_bounded_number_of_bytes(s):
    follower = s.c.brokers[s.follower].child
    big = b"p" * (700 * 1024)
    follower.pause()   # sends now wait for a replica that does not answer
    try:
        waiting = s.stub.SendMessage.future(broker_pb2.SendRequest(topic=TOPIC, queue_id=0, messages=[
            common_pb2.Message(topic=TOPIC, body=big)]), timeout=30)
        proc.wait_until(lambda: int(dict(s.c.status(s.master).stats).get("pending_send_bytes", "0")) > 0, 20, 0.02,
                        "a send waiting for its replicas")
        with pytest.raises(grpc.RpcError) as ei:
            s.stub.SendMessage(broker_pb2.SendRequest(topic=TOPIC, queue_id=1, messages=[
                common_pb2.Message(topic=TOPIC, body=big)]), timeout=10)
        md = dict(ei.value.trailing_metadata() or ())
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert md.get("orbitmq-error") == "BROKER_BUSY" and md.get("orbitmq-stored") == "0"
        assert "max_pending_send_bytes" in ei.value.details()
    finally:
        follower.resume()
    try:
        waiting.result()
    except grpc.RpcError as e:   # the replica was paused past the ack timeout: a typed refusal
        assert dict(e.trailing_metadata() or ()).get("orbitmq-error") in (
            "REPLICATION_TIMEOUT", "IN_SYNC_REPLICAS_NOT_ENOUGH")
    assert int(dict(s.c.status(s.master).stats)["pending_send_bytes"]) == 0
    proc.wait_until(lambda: s.broker_id(s.follower) in s.c.sync_state_set(s.master), 60, 0.2, "follower back")
    proc.wait_until(lambda: s.send(1) is None, 30, 0.2, "sends acknowledged again")
