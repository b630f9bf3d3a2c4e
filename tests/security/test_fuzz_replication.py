"""Hypothesis fuzzing of a real master's replication port (1 controller, 1 name server, a set of 2
replicas with the cluster secret; the follower is stopped so its id can be claimed).

Inputs: random bytes; a valid signed HELLO with bytes flipped, cut or followed by junk; and an
admitted session (signed HELLO of the stopped follower's id) followed by random frames (ACKs
with absurd offsets, a second HELLO, DATA or REFUSE frames, random bytes). After each input we
half-close: the master must close the connection within the deadline (no hang) having sent only
REFUSE, WELCOME or DATA frames; afterwards it still answers health checks, acknowledges sends,
and every message stored before is still readable."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import grpc
import pytest
from fuzzing import COUNTS, OUTCOMES
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbitmq.broker.ha import protocol as hp
from orbitmq.broker.ha.epochs import EpochEntry
from orbitmq.broker.ha.hello_check import sign_hello
from orbitmq.common import proc
from orbitmq.common.local_cluster import ClusterSpec, LocalCluster
from orbitmq.common.net import split_addr
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

pytestmark = pytest.mark.process
TOPIC = "fz-rep"
EXAMPLES = 40
CLOSE_DEADLINE_S = 15.0
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


class Master:
    def __init__(self, root: Path) -> None:
        spec = ClusterSpec(dir=str(root), broker_sets=["r"], controllers=1, namesrvs=1, replicas=2, learners=0,
                           broker_settings={"register_interval_s": "5", "ha_handshake_timeout_s": "2"})
        self.c = LocalCluster(spec)
        self.c.start()
        self.name = self.c.wait_ready(120)["r"]
        self.secret = Path(self.c.cluster_secret()).read_text().strip().encode()
        self.addr = split_addr(self.c.brokers[self.name].ha_addr)
        self.ch = grpc.insecure_channel(self.c.brokers[self.name].addr)
        self.stub = broker_pb2_grpc.BrokerStub(self.ch)
        proc.wait_until(lambda: self.stub.CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
            topic=TOPIC, read_queues=1, write_queues=1, perm=6)), timeout=5) is not None, 30, 0.2, "topic")
        self.kept = [f"kept-{i}".encode() * 50 for i in range(20)]
        for body in self.kept:
            self.send(body)
        follower = next(n for n in self.c.brokers if n != self.name)
        st = self.c.status(follower)
        self.follower_id = int(dict(st.stats)["ha_broker_id"])
        self.c.child(follower).stop()   # its id is now free to claim
        self.seq = 0

    def send(self, body: bytes) -> None:
        self.stub.SendMessage(broker_pb2.SendRequest(topic=TOPIC, queue_id=0, messages=[
            common_pb2.Message(topic=TOPIC, body=body)]), timeout=15)

    def hello(self) -> bytes:
        self.seq += 1   # distinct signatures: a repeated one is refused as a replay
        h = hp.Hello(self.follower_id, False, self.seq, (EpochEntry(1, 0),))
        return hp.encode(sign_hello(h, self.secret, int(time.time() * 1000)))

    def exchange(self, data: bytes, then: bytes | None = None) -> list[str]:
        """Send `data` (and once the master answers WELCOME, `then`), half-close, read until the master
        closes; the kinds of frames it sent."""
        dec = hp.FrameDecoder()
        kinds: list[str] = []
        t0 = time.monotonic()
        with socket.create_connection(self.addr, timeout=CLOSE_DEADLINE_S) as sock:
            try:
                sock.sendall(data)
                if then is None:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass   # the master may close first
            while True:
                try:
                    chunk = sock.recv(1 << 20)
                except ConnectionResetError:
                    break
                except TimeoutError:
                    raise AssertionError(f"master kept the connection open for {CLOSE_DEADLINE_S}s") from None
                if not chunk:
                    break
                try:
                    kinds += [f"Refuse:{f.code}" if isinstance(f, hp.Refuse) else type(f).__name__
                              for f in dec.feed(chunk)]
                except hp.FrameError as e:
                    raise AssertionError(f"master sent a malformed frame: {e}") from None
                if then is not None and "Welcome" in kinds:
                    try:
                        sock.sendall(then)
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    then = None
                assert time.monotonic() - t0 < CLOSE_DEADLINE_S, "master kept streaming after our half-close"
        return kinds

    def healthy(self) -> bool:
        r = health_pb2_grpc.HealthStub(self.ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        return r.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    master = Master(tmp_path_factory.mktemp("fuzzrep"))
    try:
        yield master
    finally:
        master.ch.close()
        master.c.stop()


def _check(m: Master, target: str, kinds: list[str]) -> None:
    COUNTS[f"replication.{target}"] += 1
    OUTCOMES["replication:" + ("+".join(sorted(set(kinds))) or "closed")] += 1
    assert {k.split(":")[0] for k in kinds} <= {"Refuse", "Welcome", "Data"}, kinds
    assert m.healthy()


@FUZZ
@given(data=st.binary(max_size=400))
def _random(m: Master, data: bytes) -> None:
    kinds = m.exchange(data)
    assert "Welcome" not in kinds
    _check(m, "random_bytes", kinds)


@st.composite
def mangled(draw, valid: bytes) -> bytes:
    b = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(b) - 1))
        b[i] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        b = b[: draw(st.integers(0, len(b)))]
    return bytes(b) + draw(st.binary(max_size=64))


def test_fuzz_random_bytes(m):
    _random(m)


def test_fuzz_corrupted_hello(m):
    @FUZZ
    @given(data=st.data())
    def one(data):
        raw = data.draw(mangled(m.hello()))
        kinds = m.exchange(raw)
        assert "Welcome" not in kinds or raw.startswith(m.hello()[:0])   # a flip anywhere breaks the CRC
        _check(m, "corrupted_hello", kinds)

    one()


ABSURD = [0, 1, -1, 2**63 - 1, -(2**63), 2**40]


@st.composite
def after_hello(draw) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["ack", "hello", "data", "refuse", "junk", "ack0"]))
        if kind == "ack":
            off = draw(st.sampled_from(ABSURD) | st.integers(-(2**63), 2**63 - 1))
            parts.append(hp.HEADER.pack(hp.MAGIC, hp.VERSION, hp.T_ACK, 8, hp.frame_crc(hp.T_ACK, 8, off.to_bytes(
                8, "big", signed=True))) + off.to_bytes(8, "big", signed=True))
        elif kind == "ack0":
            parts.append(hp.encode(hp.Ack(0)))
        elif kind == "hello":
            parts.append(hp.encode(hp.Hello(draw(st.integers(1, 9)), draw(st.booleans()), 0, ())))
        elif kind == "data":
            parts.append(hp.encode(hp.Data(0, 1, 0, 0, 0, draw(st.binary(max_size=64)))))
        elif kind == "refuse":
            parts.append(hp.encode(hp.Refuse("X", draw(st.text(max_size=20)))))
        else:
            parts.append(draw(st.binary(min_size=1, max_size=64)))
    return b"".join(parts)


def test_fuzz_admitted_session(m):
    @FUZZ
    @given(tail=after_hello())
    def one(tail):
        kinds = m.exchange(m.hello(), tail)
        # refused only as a replay or while the previous session's connection is still being closed
        _check(m, "admitted_session", kinds)

    one()


def test_master_intact_after_fuzzing(m):
    assert m.healthy()
    m.send(b"after-fuzz")

    def bodies() -> list[bytes]:
        r = m.stub.PullMessage(broker_pb2.PullRequest(group="fz-check", topic=TOPIC, queue_id=0, queue_offset=0,
                                                      max_messages=100), timeout=10)
        return [x.body for x in r.messages]

    proc.wait_until(lambda: len(bodies()) > len(m.kept), 30, 0.1, "the new message dispatched")
    assert bodies() == [*m.kept, b"after-fuzz"]
    assert m.c.child(m.name).alive()
    # the master's log shows the fuzz was handled as bad input, never as its own failure
    log = (m.c.logs_dir / f"{m.name}.log").read_text(errors="replace")
    assert "Traceback" not in log and "sender failed" not in log
