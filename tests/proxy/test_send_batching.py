"""Cluster mode: concurrent SendMessage calls share broker calls (proxy/send_lanes.py), yet every send
gets its own receipt and offset, and each message group is stored in the order it was sent. Driven by
the official RocketMQ 5 Python client unchanged."""

from __future__ import annotations

import threading
import time

import pytest

from orbitmq.common import proc
from tests.proxy.conftest import receive_until
from tests.proxy.test_cluster_mode import cluster, start_cluster_proxy  # noqa: F401 - the fixture

pytestmark = pytest.mark.process

GROUPS = 6
PER_GROUP = 10
BURST = 60


def _broker_counts(namesrv: str) -> tuple[int, int]:
    """(send calls, messages stored) summed over the masters."""
    from orbitmq.client import Admin

    calls = msgs = 0
    with Admin(namesrv) as admin:
        for row in admin.cluster_list():
            st = admin.broker_status(row.master_address)["stats"]
            calls += int(st["sends"])
            msgs += int(st["msgs_put"])
    return calls, msgs


def _stored(namesrv: str, want: int) -> dict[str, tuple[str, int, int]]:
    """msg_id -> (broker set, queue, offset) of every message of "orders", read straight from the brokers."""
    from orbitmq.client import PullConsumer

    c = PullConsumer("verify-batching", namesrv, pull_batch=32)
    c.subscribe("orders")
    c.start()
    out: dict[str, tuple[str, int, int]] = {}
    dups = []
    try:
        deadline = time.monotonic() + 120
        while len(out) < want and time.monotonic() < deadline:
            for m in c.poll(1.0):
                if m.msg_id in out:
                    dups.append(m.msg_id)
                out[m.msg_id] = (m.broker_set, m.queue_id, m.queue_offset)
    finally:
        c.close()
    assert not dups
    return out


def _queued(child, kind: str) -> int:
    """How many sends or acks the proxy has queued behind a busy lane so far (its DEBUG log says)."""
    return child.log_path.read_text(errors="replace").count(f"queued behind a busy lane: {kind}")


def _wait_queued(child, kind: str, at_least: int) -> None:
    """Event-driven: until the proxy holds `at_least` of them in lanes (the brokers are stopped)."""
    proc.wait_until(lambda: _queued(child, kind) >= at_least, 120, 0.05, f"{at_least} {kind}s queued in lanes")


def test_concurrent_sends_batched_with_own_receipts_and_group_order(cluster, procs, rmq):  # noqa: F811
    proxy, ep = start_cluster_proxy(procs, cluster.namesrv, debug=True)
    p = rmq.start(rmq.mod.Producer(rmq.config(ep), ("orders",)))
    p.send(rmq.message("orders", b"warm-up"))
    receipts: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []

    def sender(g: int) -> None:
        try:
            for i in range(PER_GROUP):  # one thread per message group, sync sends: a known order per group
                receipts[(g, i)] = p.send(rmq.message("orders", f"G{g}:{i}".encode(), message_group=f"G{g}"))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=sender, args=(g,)) for g in range(GROUPS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and len(receipts) == GROUPS * PER_GROUP

    calls0, msgs0 = _broker_counts(cluster.namesrv)
    # the masters stopped for a moment: the first calls hang, the sends arriving meanwhile wait in lanes
    children = [child for child, _, _ in cluster.brokers.values()]
    for child in children:
        child.pause()
    try:
        before = _queued(proxy, "send")
        futs = [p.send_async(rmq.message("orders", f"burst-{i}".encode())) for i in range(BURST)]
        _wait_queued(proxy, "send", before + BURST // 2)
    finally:
        for child in children:
            child.resume()
    burst = [f.result(timeout=120) for f in futs]
    calls1, msgs1 = _broker_counts(cluster.namesrv)
    assert msgs1 - msgs0 == BURST  # every send stored once...
    assert calls1 - calls0 < BURST  # ...in fewer broker calls: concurrent sends shared them

    every = list(receipts.values()) + burst
    ids = [r.message_id for r in every]
    assert len(set(ids)) == len(ids)
    stored = _stored(cluster.namesrv, len(ids) + 1)
    for r in every:  # each send answered with the offset its own message was stored at
        assert stored[r.message_id][2] == int(r.offset)
    for g in range(GROUPS):
        where = [stored[receipts[(g, i)].message_id] for i in range(PER_GROUP)]
        assert len({(b, q) for b, q, _ in where}) == 1  # a message group stays on one queue
        offsets = [o for _, _, o in where]
        assert offsets == sorted(offsets) and len(set(offsets)) == PER_GROUP  # in the order sent


def test_concurrent_acks_through_ack_lanes_each_get_their_own_answer(cluster, procs, rmq):  # noqa: F811
    proxy, ep = start_cluster_proxy(procs, cluster.namesrv, debug=True)
    p = rmq.start(rmq.mod.Producer(rmq.config(ep), ("orders",)))
    for i in range(24):
        p.send(rmq.message("orders", f"ack-{i}".encode()))
    c = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g-acks", {"orders": rmq.mod.FilterExpression()}, 3))
    got = receive_until(c, 24, 120, invisible_s=60, ack=False, batch=16)
    assert sorted(m.body for m in got) == sorted(f"ack-{i}".encode() for i in range(24))
    # every ack at once, from threads (the client's ack_async returns None in 5.1.2), one message acked
    # twice: exactly one of the twins succeeds (PopAck answers per handle), every other ack does
    twins = [*got, got[0]]
    outcomes: list[bool | None] = [None] * len(twins)

    def ack(i: int) -> None:
        try:
            c.ack(twins[i])
            outcomes[i] = True
        except Exception:  # noqa: BLE001 - the refused twin
            outcomes[i] = False

    threads = [threading.Thread(target=ack, args=(i,)) for i in range(len(twins))]
    children = [child for child, _, _ in cluster.brokers.values()]
    for child in children:  # masters stopped a moment: the acks pile up in the lanes and share calls
        child.pause()
    try:
        for t in threads:
            t.start()
        _wait_queued(proxy, "ack", len(twins) // 2)
    finally:
        for child in children:
            child.resume()
    for t in threads:
        t.join(120)
    assert all(outcomes[1:-1]) and {outcomes[0], outcomes[-1]} == {True, False}
