"""A real broker process serving the framed protocol (`remoting_listen`) beside gRPC: the client finds
it in the routes and sends and pulls over it; errors carry the same names as on gRPC; many calls
share one connection; malformed input closes the connection with a short log line; a broker that
does not announce the port (or a client told `protocol="grpc"`) is served over gRPC."""

from __future__ import annotations

import socket
import struct
import threading
import time

import grpc
import pytest

from orbitmq.client import Admin, Message, Producer, PullConsumer, errors
from orbitmq.client.remoting import RemotingClient, RemotingRpcError
from orbitmq.common import framing, net
from orbitmq.common.grpc_errors import ERROR_KEY
from orbitmq.common.proc import wait_until
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

pytestmark = pytest.mark.process

TOPIC = "Framed"


def start(procs, tmp_path, name: str = "broker", remoting: bool = True) -> tuple[str, str, object]:
    """(name server, broker gRPC address, broker child); the topic exists and is routed."""
    ns = f"127.0.0.1:{net.free_port()}"
    procs.start(f"{name}-namesrv", ["namesrv", "--listen", ns])
    net.wait_for_port(ns, 30)
    addr = f"127.0.0.1:{net.free_port()}"
    extra = ["--set", "remoting_listen=127.0.0.1:0"] if remoting else []
    child = procs.start(name, ["broker", "--listen", addr, "--namesrv", ns, "--store-dir", str(tmp_path / name),
                               "--broker-set", "bs1", "--set", "register_interval_s=0.5", *extra])
    net.wait_for_port(addr, 30)
    with Admin(ns) as admin:
        wait_until(lambda: admin.cluster_list(), 30, what="broker registered")
        admin.create_topic(TOPIC, 4)
    return ns, addr, child


def remoting_addr(ns: str, broker: str) -> str:
    with Producer(ns) as p:
        p.transport.route(TOPIC)
        r = p.transport.remoting(broker)
        assert r is not None, "the route does not announce the broker's framed address"
        return r.address


@pytest.fixture
def cluster(procs, tmp_path):
    return start(procs, tmp_path)


def test_producer_and_pull_consumer_go_over_the_framed_port(cluster):
    ns, broker, _ = cluster
    with Producer(ns) as p:
        r1 = p.send(Message(TOPIC, b"one", tags="a", keys=["k1"], properties={"x": "1"}))
        receipts = p.send_batch([Message(TOPIC, f"batch-{i}".encode(), tags="b") for i in range(5)])
        big = p.send_batch([Message(TOPIC, f"big-{i}".encode().ljust(16384, b".")) for i in range(64)])
        assert len(big) == 64    # a 1 MiB request: arrives in many segments (the broker waits for it whole)
        futs = [p.send_async(Message(TOPIC, f"async-{i}".encode())) for i in range(50)]
        p.flush(30)
        assert all(f.exception() is None for f in futs)
        assert p.transport.remoting(broker) is not None
        assert broker not in p.transport._channels, "a send went over gRPC"
    assert r1.broker_addr == broker and r1.msg_id
    assert len({(r.queue.queue_id, r.queue_offset) for r in receipts}) == 5
    want = {b"one"} | {f"batch-{i}".encode() for i in range(5)} | {f"async-{i}".encode() for i in range(50)} | \
        {f"big-{i}".encode().ljust(16384, b".") for i in range(64)}
    got: dict[bytes, object] = {}
    c = PullConsumer("framed-readers", ns)
    c.subscribe(TOPIC)
    c.start()
    try:
        wait_until(lambda: got.update({m.body: m for m in c.poll(0.5)}) or want <= set(got), 60,
                   what="every message pulled back")
        assert broker not in c.transport._channels, "a pull went over gRPC"
    finally:
        c.close()
    m = got[b"one"]
    assert (m.tags, list(m.keys), dict(m.properties).get("x")) == ("a", ["k1"], "1")
    stub = broker_pb2_grpc.BrokerStub(grpc.insecure_channel(broker))
    stats = dict(stub.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=10).stats)
    assert int(stats["framed_calls"]) >= 4, stats   # the sends (and pulls) the broker counted on its framed port
    # the 1 MiB batch record reached the store as a view of its frame, not copied into the request
    assert int(stats["framed_batches_apart"]) == 1, stats


def test_errors_carry_the_grpc_names(cluster):
    ns, broker, _ = cluster
    cli = RemotingClient(remoting_addr(ns, broker))
    stub = broker_pb2_grpc.BrokerStub(grpc.insecure_channel(broker))
    try:
        cases = [
            broker_pb2.SendRequest(topic="NoSuchTopic", messages=[common_pb2.Message(body=b"x")]),
            broker_pb2.SendRequest(topic=TOPIC, messages=[common_pb2.Message(body=b"")]),
            broker_pb2.SendRequest(topic=TOPIC, queue_id=99, messages=[common_pb2.Message(body=b"x")]),
            broker_pb2.SendRequest(topic="bad topic!", messages=[common_pb2.Message(body=b"x")]),
        ]
        for req in cases:
            with pytest.raises(RemotingRpcError) as framed_err:
                cli.call("SendMessage", req, 10)
            with pytest.raises(grpc.RpcError) as grpc_err:
                stub.SendMessage(req, timeout=10)
            f, g = framed_err.value, grpc_err.value
            assert f.code() == g.code()
            assert dict(f.trailing_metadata()) == {k: v for k, v in g.trailing_metadata()}
            assert type(errors.from_rpc_error(f)) is type(errors.from_rpc_error(g))
        assert dict(f.trailing_metadata())[ERROR_KEY] == "BAD_TOPIC_NAME"
        with pytest.raises(errors.TopicNotFoundError):
            with Producer(ns, retries=0) as p:
                p.transport._remoting_addr[broker] = cli.address
                p.transport.call_broker(broker, "SendMessage", cases[0])
    finally:
        cli.close()


def test_a_parked_pull_is_answered_by_a_send(cluster):
    ns, broker, _ = cluster
    cli = RemotingClient(remoting_addr(ns, broker))
    try:
        rng = cli.call("GetOffsetRange", broker_pb2.GetOffsetRangeRequest(topic=TOPIC, queue_id=2), 10)
        pull = cli.future("PullMessage", broker_pb2.PullRequest(
            group="g", topic=TOPIC, queue_id=2, queue_offset=rng.max_offset, max_messages=8, long_poll_ms=30_000,
            commit_offset=-1), 60)
        time.sleep(0.3)   # let it park (if it has not yet, it simply finds the message)
        assert not pull.done()
        cli.call("SendMessage", broker_pb2.SendRequest(topic=TOPIC, queue_id=2, messages=[
            common_pb2.Message(body=b"wake up")]), 10)
        resp = pull.result(timeout=45)   # within the long poll: answered because of the send
        assert resp.status == broker_pb2.PULL_FOUND
        assert [m.body for m in resp.messages] == [b"wake up"]
    finally:
        cli.close()


def test_many_calls_in_flight_on_one_connection(cluster):
    ns, broker, _ = cluster
    cli = RemotingClient(remoting_addr(ns, broker))
    try:
        def req(i: int) -> broker_pb2.SendRequest:
            return broker_pb2.SendRequest(topic=TOPIC, queue_id=i % 4,
                                          messages=[common_pb2.Message(body=f"p{i}".encode())])
        futs = [cli.future("SendMessage", req(i), 60) for i in range(300)]
        results = {}
        errs: list[BaseException] = []

        def worker(k: int) -> None:
            try:
                for i in range(50):
                    r = cli.call("SendMessage", req(1000 * k + i), 60).results[0]
                    results[(r.queue_id, r.queue_offset)] = f"t{k}-{i}"
            except BaseException as e:  # noqa: BLE001
                errs.append(e)
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for i, f in enumerate(futs):
            r = f.result(timeout=60).results[0]
            assert r.queue_id == i % 4
            results[(r.queue_id, r.queue_offset)] = i
        for t in threads:
            t.join(60)
        assert not errs, errs
        assert len(results) == 300 + 4 * 50, "two calls answered with one receipt"
        assert cli._conn is not None and cli._calls == {}
    finally:
        cli.close()


def _raw(addr: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=30)
    s.settimeout(30)
    return s


def _closed_by_peer(s: socket.socket) -> bool:
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_malformed_input_closes_the_connection_with_a_short_log_line(cluster, procs, tmp_path):
    ns, broker, child = cluster
    raddr = remoting_addr(ns, broker)
    s = _raw(raddr)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")      # a gRPC client on the wrong port
    assert _closed_by_peer(s)
    s = _raw(raddr)
    s.sendall(struct.pack(">I", 0x7FFFFFFF) + b"OR")      # a frame beyond the broker's max frame size
    assert _closed_by_peer(s)
    s = _raw(raddr)
    huge = '{"protocol":"' + "z" * 5000 + '"}'
    s.sendall(framing.encode(1, 0, huge.encode()))        # a HELLO of another protocol, 5 KB of it
    assert _closed_by_peer(s)
    log = tmp_path / "broker.log"
    wait_until(lambda: log.read_text().count("malformed input") >= 3, 30, what="three malformed-input lines")
    lines = [ln for ln in log.read_text().splitlines() if "malformed input" in ln]
    assert all(len(ln) < 500 for ln in lines), "a peer's bad input is quoted in full"
    # the broker still serves: unknown methods and undecodable protobufs are answered, not fatal
    s = _raw(raddr)
    side_hello = framing.encode(1, 0, b'{"protocol":"orbitmq-framed/1"}')
    s.sendall(side_hello + framing.encode(2, 999, b"") + framing.encode(3, 1, b"\xff\xff\xff"))
    dec = framing.FrameDecoder()
    frames = []
    while len(frames) < 3:
        frames.extend(dec.feed(s.recv(65536)))
    errs = {f.request_id: framing.decode_error(f.payload) for f in frames if f.flags & framing.FLAG_ERROR}
    assert errs[2].code == "BAD_REQUEST" and "unknown method" in errs[2].details
    assert errs[3].code == "BAD_REQUEST" and "malformed SendRequest" in errs[3].details
    s.close()
    with Producer(ns) as p:
        assert p.send(Message(TOPIC, b"still serving")).msg_id
    assert child.alive()


def test_a_broker_without_the_port_is_served_over_grpc(procs, tmp_path):
    ns, broker, _ = start(procs, tmp_path, name="plain", remoting=False)
    with Producer(ns) as p:
        assert p.send(Message(TOPIC, b"over grpc")).broker_addr == broker
        assert p.transport.remoting(broker) is None
        assert broker in p.transport._channels


def test_protocol_grpc_is_honoured_where_the_port_is_announced(cluster):
    ns, broker, _ = cluster
    with Producer(ns, protocol="grpc") as p:
        assert p.send(Message(TOPIC, b"forced grpc")).broker_addr == broker
        assert p.transport.remoting(broker) is None
        assert broker in p.transport._channels
    with pytest.raises(ValueError):
        Producer(ns, protocol="carrier-pigeon")


def test_a_paused_broker_fails_a_new_connection_within_the_call_timeout(cluster):
    ns, broker, child = cluster
    raddr = remoting_addr(ns, broker)
    cli = RemotingClient(raddr, connect_timeout_s=120)
    child.pause()        # its kernel still accepts the connection; the HELLO goes unanswered
    try:
        t0 = time.monotonic()
        call = cli.future("GetBrokerStatus", broker_pb2.GetBrokerStatusRequest(), 1.0)
        with pytest.raises(RemotingRpcError) as e:
            call.result(timeout=60)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - t0 < 60, "the call waited for the connect timeout, not its own"
    finally:
        child.resume()
    assert cli.call("GetBrokerStatus", broker_pb2.GetBrokerStatusRequest(), 30).role == "STANDALONE"
    cli.close()
