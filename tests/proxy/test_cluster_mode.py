"""`orbitmq proxy --mode cluster`: stateless, forwarding to two broker sets through the name server,
with the official RocketMQ 5 Python client unchanged."""

from __future__ import annotations

import time

import pytest

from orbitmq.common import net
from tests.e2e.conftest import Cluster
from tests.proxy.conftest import receive_until

pytestmark = pytest.mark.process


FRAMED = ["--set", "remoting_listen=127.0.0.1:0"]


@pytest.fixture
def cluster(procs, tmp_path):
    c = Cluster(procs, tmp_path)
    c.start_broker("broker-a", FRAMED)   # the proxy sends to it over its framed port...
    c.start_broker("broker-b")           # ...and to this one over gRPC: every test runs both paths
    c.create_topic("orders", queues=2)
    from orbitmq.client import Admin

    with Admin(c.namesrv) as admin:
        admin.create_group("g-dlq", retry_max_times=1)
        admin.create_group("g-fifo", attributes={"fifo": "true"})
    return c


def start_cluster_proxy(procs, namesrv: str, addr: str | None = None, n: int = 1,
                        debug: bool = False) -> tuple[object, str]:
    addr = addr or f"127.0.0.1:{net.free_port()}"
    child = procs.start(f"proxy-{n}", ["proxy", "--mode", "cluster", "--namesrv", namesrv, "--listen", addr,
                                       "--set", "tx_check_after_s=3", *(["--set", "log_level=DEBUG"] * debug)])
    net.wait_for_port(addr, 60)
    return child, addr


def test_send_receive_ack_across_broker_sets_and_a_proxy_restart(cluster, procs, rmq):
    child, ep = start_cluster_proxy(procs, cluster.namesrv)
    p = rmq.start(rmq.mod.Producer(rmq.config(ep), ("orders",)))
    bodies = {f"o{i}".encode() for i in range(30)}
    for b in sorted(bodies):
        p.send(rmq.message("orders", b))
    c = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g1", {"orders": rmq.mod.FilterExpression()}, 3))
    acked = {m.body for m in receive_until(c, 10, 90, batch=4)}
    held = {m.body for m in receive_until(c, 5, 90, invisible_s=5, ack=False, batch=4)}
    assert len(acked) >= 10 and held and not (acked & held)
    child.stop()  # the proxy keeps no state: a new one serves the same clients
    start_cluster_proxy(procs, cluster.namesrv, ep, 2)
    rest = set()
    deadline = time.monotonic() + 120
    while rest | acked != bodies and time.monotonic() < deadline:
        try:
            for m in c.receive(16, 10):
                rest.add(m.body)
                c.ack(m)
        except Exception:  # noqa: BLE001 - reconnecting after the restart
            time.sleep(0.5)
    assert rest | acked == bodies and not (rest & acked)
    assert held <= rest  # unacknowledged before the restart: delivered again


def test_dead_letter_and_fifo_through_brokers(cluster, procs, rmq):
    _child, ep = start_cluster_proxy(procs, cluster.namesrv)
    p = rmq.start(rmq.mod.Producer(rmq.config(ep), ("orders",)))
    mid = p.send(rmq.message("orders", b"poison")).message_id
    c = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g-dlq", {"orders": rmq.mod.FilterExpression()}, 3))
    attempts = [m.delivery_attempt for m in receive_until(c, 1, 90, invisible_s=1, ack=False)]
    attempts += [m.delivery_attempt for m in receive_until(c, 1, 90, invisible_s=1, ack=False)]
    assert attempts == [1, 2]
    end = time.monotonic() + 5
    while time.monotonic() < end:
        assert c.receive(16, 2) == []  # max 2 attempts (retry_max_times=1): dead-lettered, not redelivered
    for i in range(8):
        p.send(rmq.message("orders", f"A{i}".encode(), message_group="A"))
    f = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g-fifo", {"orders": rmq.mod.FilterExpression()}, 3))
    order = []
    deadline = time.monotonic() + 120
    while len([b for b in order if b.startswith(b"A")]) < 8 and time.monotonic() < deadline:
        msgs = f.receive(4, 30)
        order += [m.body for m in msgs]
        for m in msgs:
            f.ack(m)
    assert [b for b in order if b.startswith(b"A")] == [f"A{i}".encode() for i in range(8)]
    assert mid


def test_delay_through_brokers(cluster, procs, rmq):
    _child, ep = start_cluster_proxy(procs, cluster.namesrv)
    p = rmq.start(rmq.mod.Producer(rmq.config(ep), ("orders",)))
    at = int(time.time()) + 4
    p.send(rmq.message("orders", b"scheduled", delivery_timestamp=at))
    c = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g-delay", {"orders": rmq.mod.FilterExpression()}, 3))
    got = receive_until(c, 1, 120)
    assert [m.body for m in got] == [b"scheduled"] and time.time() >= at - 0.01


def test_transactions_through_brokers(cluster, procs, rmq):
    _child, ep = start_cluster_proxy(procs, cluster.namesrv)
    checked = []

    class Checker(rmq.mod.TransactionChecker):
        def check(self, message):
            checked.append(message.body)
            return rmq.mod.TransactionResolution.COMMIT

    p = rmq.start(rmq.mod.Producer(rmq.config(ep), ("orders",), Checker()))
    t1 = p.begin_transaction()
    p.send(rmq.message("orders", b"tx-commit"), t1)
    t2 = p.begin_transaction()
    p.send(rmq.message("orders", b"tx-rollback"), t2)
    p.send(rmq.message("orders", b"tx-orphan"), p.begin_transaction())
    c = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g-tx", {"orders": rmq.mod.FilterExpression()}, 3))
    t1.commit()
    t2.rollback()
    got = receive_until(c, 2, 120)
    assert sorted(m.body for m in got) == [b"tx-commit", b"tx-orphan"]
    assert checked == [b"tx-orphan"]


def test_push_consumer_through_brokers(cluster, procs, rmq):
    import threading

    _child, ep = start_cluster_proxy(procs, cluster.namesrv)
    p = rmq.start(rmq.mod.Producer(rmq.config(ep), ("orders",)))
    for i in range(12):
        p.send(rmq.message("orders", f"e{i}".encode()))
    seen: list[tuple[bytes, int]] = []
    lock = threading.Lock()
    ConsumeResult = rmq.mod.ConsumeResult

    class Listener(rmq.mod.MessageListener):
        def consume(self, message):
            with lock:
                seen.append((message.body, message.delivery_attempt))
            ok = not (message.body == b"e5" and message.delivery_attempt == 1)
            return ConsumeResult.SUCCESS if ok else ConsumeResult.FAILURE

    rmq.start(rmq.mod.PushConsumer(rmq.config(ep), "push-c", Listener(), {"orders": rmq.mod.FilterExpression()}))
    want = {f"e{i}".encode() for i in range(12)}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            if {b for b, _ in seen} == want and (b"e5", 2) in seen:
                break
        time.sleep(0.2)
    with lock:
        assert {b for b, _ in seen} == want and (b"e5", 2) in seen
