"""The official RocketMQ 5 Python client (rocketmq-python-client), unchanged, against `orbitmq proxy`.

Each test starts a real proxy process (local mode: embedded store) on a free loopback port.
Waits are generous: the client has its own timers and the machine is shared.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.proxy.conftest import receive_until

pytestmark = pytest.mark.process


def producer(rmq, ep, *topics):
    return rmq.start(rmq.mod.Producer(rmq.config(ep), topics))


def simple(rmq, ep, group, topic, await_s=3, tag="*"):
    sub = {topic: rmq.mod.FilterExpression(tag)}
    return rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), group, sub, await_s))


def test_normal_messages_produced_received_and_acknowledged(start_proxy, rmq):
    ep = start_proxy("--auto-create-topics").addr
    p = producer(rmq, ep, "orders")
    sent = {}
    for i in range(20):
        m = rmq.message("orders", f"order-{i}".encode(), tag="new" if i % 2 else "paid", keys=f"k{i}",
                        properties={"i": str(i)})
        r = p.send(m)
        sent[r.message_id] = i
    c = simple(rmq, ep, "billing", "orders")
    got = receive_until(c, 20, 90)
    assert sorted(m.body for m in got) == sorted(f"order-{i}".encode() for i in range(20))
    for m in got:
        i = sent[m.message_id]
        assert m.properties["i"] == str(i) and m.tag == ("new" if i % 2 else "paid") and f"k{i}" in m.keys
        assert m.delivery_attempt == 1 and m.topic == "orders"
    assert c.receive(16, 30) == []  # everything acknowledged: nothing comes back
    # a tag filter: a second group only sees "new"
    c2 = simple(rmq, ep, "audit", "orders", tag="new")
    got2 = receive_until(c2, 10, 90)
    assert sorted(m.body for m in got2) == sorted(f"order-{i}".encode() for i in range(1, 20, 2))


def test_redelivery_after_the_invisible_duration_then_dead_letter(start_proxy, rmq):
    ep = start_proxy("--auto-create-topics", "--group", "g1:max_attempts=2").addr
    p = producer(rmq, ep, "jobs")
    mid = p.send(rmq.message("jobs", b"job")).message_id
    c = simple(rmq, ep, "g1", "jobs")
    first = receive_until(c, 1, 90, invisible_s=2, ack=False)
    assert [(m.message_id, m.delivery_attempt) for m in first] == [(mid, 1)]
    second = receive_until(c, 1, 90, invisible_s=2, ack=False)
    assert [(m.message_id, m.delivery_attempt) for m in second] == [(mid, 2)]
    with pytest.raises(Exception) as e:  # the first handle is stale now
        c.ack(first[0])
    assert "INVALID_RECEIPT_HANDLE" in str(e.value) or "40013" in str(e.value) or "stale" in str(e.value)
    # max_attempts=2: after the second invisible time it goes to %DLQ%g1, not to g1 again
    end = time.monotonic() + 6
    while time.monotonic() < end:
        assert c.receive(16, 2) == []
    dlq = simple(rmq, ep, "dlq-reader", "%DLQ%g1")
    got = receive_until(dlq, 1, 90)
    assert [m.body for m in got] == [b"job"] and got[0].message_id == mid


def test_change_invisible_duration_and_nack(start_proxy, rmq):
    ep = start_proxy("--auto-create-topics").addr
    producer(rmq, ep, "t").send(rmq.message("t", b"x"))
    c = simple(rmq, ep, "g", "t")
    [m] = receive_until(c, 1, 90, invisible_s=60, ack=False)
    c.change_invisible_duration(m, 1)  # make it visible again in a second
    [again] = receive_until(c, 1, 90, invisible_s=60, ack=False)
    assert again.message_id == m.message_id and again.delivery_attempt == 2
    c.ack(again)
    assert c.receive(16, 30) == []


def test_push_consumer_with_a_failure_retried(start_proxy, rmq):
    ep = start_proxy("--auto-create-topics").addr
    p = producer(rmq, ep, "events")
    for i in range(10):
        p.send(rmq.message("events", f"e{i}".encode()))
    seen: list[tuple[bytes, int]] = []
    lock = threading.Lock()
    ConsumeResult = rmq.mod.ConsumeResult

    class Listener(rmq.mod.MessageListener):
        def consume(self, message):
            with lock:
                seen.append((message.body, message.delivery_attempt))
            if message.body == b"e3" and message.delivery_attempt == 1:
                return ConsumeResult.FAILURE
            return ConsumeResult.SUCCESS

    rmq.start(rmq.mod.PushConsumer(rmq.config(ep), "push-g", Listener(), {"events": rmq.mod.FilterExpression()}))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            if {b for b, _ in seen} == {f"e{i}".encode() for i in range(10)} and (b"e3", 2) in seen:
                break
        time.sleep(0.2)
    with lock:
        assert {b for b, _ in seen} == {f"e{i}".encode() for i in range(10)}
        assert (b"e3", 2) in seen  # redelivered after the failure, attempt counted


def test_fifo_messages_in_order_per_group(start_proxy, rmq):
    ep = start_proxy("--auto-create-topics", "--group", "fifo-g:fifo").addr
    p = producer(rmq, ep, "seq")
    for i in range(12):
        p.send(rmq.message("seq", f"{'AB'[i % 2]}{i}".encode(), message_group="AB"[i % 2]))
    c = simple(rmq, ep, "fifo-g", "seq")
    order: list[bytes] = []
    deadline = time.monotonic() + 120
    while len(order) < 12 and time.monotonic() < deadline:
        msgs = c.receive(4, 30)
        for m in msgs:
            order.append(m.body)
        for m in msgs:
            c.ack(m)
    for g in "AB":
        mine = [b for b in order if b.startswith(g.encode())]
        assert mine == [f"{g}{i}".encode() for i in range(12) if "AB"[i % 2] == g]


def test_delay_message_arrives_at_its_delivery_time_even_across_a_proxy_kill(start_proxy, rmq):
    px = start_proxy("--auto-create-topics")
    ep = px.addr
    p = producer(rmq, ep, "later")
    at = int(time.time()) + 6
    p.send(rmq.message("later", b"tick", delivery_timestamp=at))
    p.send(rmq.message("later", b"now"))
    c = simple(rmq, ep, "g", "later")
    assert [m.body for m in receive_until(c, 1, 60)] == [b"now"]
    px.stop(kill=True)  # the scheduled message is in the log (timer topic), not in memory
    px.start()
    got = receive_until(c, 1, 120)
    assert [m.body for m in got] == [b"tick"]
    assert time.time() >= at - 0.01 and got[0].delivery_timestamp // 1000 == at


def test_proxy_restart_mid_consumption_loses_nothing(start_proxy, rmq):
    px = start_proxy("--auto-create-topics")
    ep = px.addr
    p = producer(rmq, ep, "durable")
    bodies = {f"d{i}".encode() for i in range(40)}
    for b in sorted(bodies):
        p.send(rmq.message("durable", b))
    c = simple(rmq, ep, "g", "durable")
    acked = set()
    unacked = set()
    deadline = time.monotonic() + 90
    while len(acked) + len(unacked) < 20 and time.monotonic() < deadline:
        for m in c.receive(8, 5):
            if len(acked) < 10:
                c.ack(m)
                acked.add(m.body)
            else:
                unacked.add(m.body)  # left unacknowledged: must come back after the restart
    assert len(acked) == 10 and unacked
    px.stop(kill=True)
    px.start()
    got = set()
    deadline = time.monotonic() + 120
    while got | acked != bodies and time.monotonic() < deadline:
        try:
            for m in c.receive(16, 10):
                got.add(m.body)
                c.ack(m)
        except Exception:  # noqa: BLE001 - the client reconnects after the restart
            time.sleep(0.5)
    assert got | acked == bodies
    assert not (got & acked)  # acknowledged before the kill: never delivered again


def test_namespace_isolates_topics_and_groups(start_proxy, rmq):
    ep = start_proxy("--auto-create-topics").addr
    for ns in ("ns1", "ns2"):
        p = rmq.start(rmq.mod.Producer(rmq.config(ep, ns), ("shared",)))
        p.send(rmq.message("shared", ns.encode()))
    c1 = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep, "ns1"), "g", {"shared": rmq.mod.FilterExpression()}, 3))
    got = receive_until(c1, 1, 90)
    assert [m.body for m in got] == [b"ns1"]
    assert c1.receive(16, 30) == []  # ns2's message is another topic


def test_fifo_push_consumer_forwards_a_failing_message_to_the_dead_letter_queue(start_proxy, rmq):
    ep = start_proxy("--auto-create-topics", "--group", "fifo-push:fifo:max_attempts=2",
                     "--set", "retry_delays_s=0.2").addr
    p = producer(rmq, ep, "steps")
    for i in range(4):
        p.send(rmq.message("steps", f"s{i}".encode(), message_group="job-1"))
    seen: list[tuple[bytes, int]] = []
    lock = threading.Lock()
    ConsumeResult = rmq.mod.ConsumeResult

    class Listener(rmq.mod.MessageListener):
        def consume(self, message):
            with lock:
                seen.append((message.body, message.delivery_attempt))
            return ConsumeResult.FAILURE if message.body == b"s1" else ConsumeResult.SUCCESS

    rmq.start(rmq.mod.PushConsumer(rmq.config(ep), "fifo-push", Listener(), {"steps": rmq.mod.FilterExpression()}))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            if b"s3" in [b for b, _ in seen]:
                break
        time.sleep(0.2)
    with lock:
        order = [b for b, _ in seen]
    # s1 failed its attempts locally, went to the DLQ, and the group moved on in order
    assert [b for b in order if b != b"s1"] == [b"s0", b"s2", b"s3"]
    assert order.index(b"s2") > max(i for i, b in enumerate(order) if b == b"s1")
    dlq = simple(rmq, ep, "dlq-reader", "%DLQ%fifo-push")
    assert [m.body for m in receive_until(dlq, 1, 90)] == [b"s1"]
