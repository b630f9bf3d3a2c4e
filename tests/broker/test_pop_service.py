"""Pop consumption on a real MessageStore: state in the commitlog, surviving a restart; DLQ moves."""

from __future__ import annotations

import pytest

from orbitmq.broker import pop_core as pc
from orbitmq.broker.pop_service import PROP_DELIVER_MS, PROP_MSG_GROUP, PopService, dlq_topic
from orbitmq.broker.store import Message, MessageStore, StoreConfig


def open_store(path) -> tuple[MessageStore, PopService]:
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=1 << 20, expiry_interval_s=0))
    pops = PopService(s, "broker-a")
    s.open()
    pops.load()
    return s, pops


@pytest.fixture
def env(tmp_path):
    s, pops = open_store(tmp_path)
    s.put_topic_config("T", {"read_queues": 2, "write_queues": 2, "perm": 6, "order": False, "attributes": {}})
    yield tmp_path, s, pops
    s.close()


def put(s, n, q=0, **props):
    for i in range(n):
        s.put(Message("T", f"m{q}-{i}".encode(), q, properties={k: str(v) for k, v in props.items()}))
    assert s.wait_dispatched(s.max_physical_offset, 10)


def test_receive_ack_and_restart_keeps_state(env):
    path, s, pops = env
    put(s, 5, 0)
    put(s, 3, 1)
    got, _ = pops.receive("G", "T", [0, 1], 6, 30_000, 1000, 3)
    assert len(got) == 6 and {r.attempt for r in got} == {1}
    for r in got[:4]:
        pops.ack("G", "T", r.handle)
    with pytest.raises(pc.PopError):
        pops.ack("G", "T", got[0].handle)  # twice
    s.close()
    s2, pops2 = open_store(path)
    try:
        # the 2 unacked are still invisible; the 2 never-received come now
        rest, _ = pops2.receive("G", "T", [0, 1], 32, 30_000, 2000, 3)
        assert sorted(r.message.body for r in rest) == sorted([b"m1-1", b"m1-2"])
        pops2.ack("G", "T", got[4].handle)  # a handle from before the restart still works
        again, _ = pops2.receive("G", "T", [0, 1], 32, 30_000, 1000 + 30_000, 3)
        assert [r.message.body for r in again] == [got[5].message.body] and again[0].attempt == 2
    finally:
        s2.close()


def test_dead_letter_after_max_attempts(env):
    _path, s, pops = env
    put(s, 1, 0)
    t = 0
    for attempt in (1, 2):
        got, wake = pops.receive("G", "T", [0], 1, 100, t, 2)
        assert [r.attempt for r in got] == [attempt] and wake == t + 100
        t += 100
    got, _ = pops.receive("G", "T", [0], 1, 100, t, 2)
    assert got == [] and pops.inflight("G", "T") == 0
    assert s.wait_dispatched(s.max_physical_offset, 10)
    dl = s.get_messages(dlq_topic("G"), 0, 0).messages
    assert [m.body for m in dl] == [b"m0-0"] and dl[0].properties["ORIGIN_TOPIC"] == "T"


def test_fifo_and_delay_and_forged_handles(env):
    _path, s, pops = env
    for i, g in enumerate("AAB"):
        s.put(Message("T", f"f{i}".encode(), 0, properties={PROP_MSG_GROUP: g}))
    s.put(Message("T", b"later", 1, properties={PROP_DELIVER_MS: "50000"}))
    assert s.wait_dispatched(s.max_physical_offset, 10)
    got, _ = pops.receive("G", "T", [0], 32, 10_000, 0, 5, fifo=True)
    assert [r.message.body for r in got] == [b"f0", b"f2"]  # f1 (A) waits for f0; B is not blocked
    assert pops.receive("G", "T", [0], 32, 10_000, 1, 5, fifo=True)[0] == []
    pops.ack("G", "T", got[0].handle)
    got, _ = pops.receive("G", "T", [0], 32, 10_000, 2, 5, fifo=True)
    assert [(r.message.body, r.attempt) for r in got] == [(b"f1", 1)]
    d, wake = pops.receive("G", "T", [1], 32, 10_000, 0, 5)
    assert d == [] and wake == 50_000
    d, _ = pops.receive("G", "T", [1], 32, 10_000, 50_000, 5)
    assert [r.message.body for r in d] == [b"later"]
    for bad in ("nonsense", pc.Handle("broker-a", "T", 0, 99, 1).encode(), pc.Handle("other", "T", 0, 0, 1).encode()):
        with pytest.raises(pc.PopError) as e:
            pops.ack("G", "T", bad)
        assert e.value.code == "INVALID_RECEIPT_HANDLE"


def test_transactions_commit_rollback_and_orphans_survive_a_restart(tmp_path):
    from orbitmq.broker.tx_service import TxService

    def open_all():
        s = MessageStore(StoreConfig(store_dir=str(tmp_path), segment_size=1 << 20, expiry_interval_s=0))
        pops = PopService(s, "b")
        tx = TxService(s)
        s.open()
        pops.load()
        tx.load()
        return s, pops, tx

    s, pops, tx = open_all()
    s.put_topic_config("T", {"read_queues": 1, "write_queues": 1, "perm": 6, "order": False, "attributes": {}})
    ids = [tx.put_half(Message("T", f"h{i}".encode(), 0, msg_id=f"ID{i}"), 0, 1000).msg_id for i in range(3)]
    assert ids == ["ID0", "ID1", "ID2"]
    assert s.get_messages("T", 0, 0).messages == []  # invisible until committed
    tx.end("ID0", "T", True, s.put)
    tx.end("ID1", "T", False, s.put)
    with pytest.raises(Exception) as e:
        tx.end("ID1", "T", True, s.put)
    assert getattr(e.value, "code", "") == "INVALID_TRANSACTION_ID"
    assert s.wait_dispatched(s.max_physical_offset, 10)
    assert [m.body for m in s.get_messages("T", 0, 0).messages] == [b"h0"]
    s.close()
    s, pops, tx = open_all()  # the open one (ID2) survives, the ended ones stay ended
    try:
        assert set(tx.open_txs) == {"ID2"}
        assert tx.due(500, 1000, 2) == []
        [(tid, m)] = tx.due(1000, 1000, 2)
        assert tid == "ID2" and m.topic == "T" and m.body == b"h2"
        tx.due(2000, 1000, 2)
        assert tx.due(3000, 1000, 2) == [] and tx.open_txs == {}  # given up after 2 checks: rolled back
    finally:
        s.close()


def test_forward_to_dead_letter_by_handle(env):
    _path, s, pops = env
    put(s, 2, 0)
    got, _ = pops.receive("G", "T", [0], 2, 30_000, 0, 16)
    pops.forward_to_dead_letter("G", "T", got[0].handle, 16)
    with pytest.raises(pc.PopError):
        pops.ack("G", "T", got[0].handle)  # gone from the group
    assert pops.ack_many("G", "T", [got[1].handle, "junk"])[0] is None
    assert s.wait_dispatched(s.max_physical_offset, 10)
    dl = s.get_messages(dlq_topic("G"), 0, 0).messages
    assert [m.body for m in dl] == [got[0].message.body] and dl[0].reconsume_times == 16


def test_timer_fires_in_delivery_order_and_survives_a_restart(tmp_path):
    from orbitmq.broker.timer_service import TIMER_TOPIC, TimerService, divert

    def open_all():
        s = MessageStore(StoreConfig(store_dir=str(tmp_path), segment_size=1 << 20, expiry_interval_s=0))
        t = TimerService(s)
        s.open()
        t.ensure_topic()
        t.load()
        return s, t

    s, t = open_all()
    s.put_topic_config("T", {"read_queues": 2, "write_queues": 2, "perm": 6, "order": False, "attributes": {}})
    for body, at, q in ((b"late", 9000, 1), (b"early", 2000, 0), (b"mid", 5000, 1)):
        s.put(divert(Message("T", body, q, properties={PROP_DELIVER_MS: str(at)})))
    assert s.wait_dispatched(s.max_physical_offset, 10)
    assert t.fire_due(1999) == 0
    assert t.fire_due(5000) == 2
    assert s.wait_dispatched(s.max_physical_offset, 10)
    assert [m.body for m in s.get_messages("T", 0, 0).messages] == [b"early"]
    assert [m.body for m in s.get_messages("T", 1, 0).messages] == [b"mid"]
    s.close()
    s, t = open_all()  # "late" is still scheduled; the fired ones do not fire again
    try:
        assert len(t.wheel) == 1 and t.fired.watermark == 0 and t.fired.above == {1, 2}
        assert t.fire_due(8999) == 0 and t.fire_due(9000) == 1
        assert s.wait_dispatched(s.max_physical_offset, 10)
        assert [m.body for m in s.get_messages("T", 1, 0).messages] == [b"mid", b"late"]
        assert s.get_messages(TIMER_TOPIC, 0, 0).max_offset == 3
        assert t.fired.watermark == 3
    finally:
        s.close()


def test_indexed_state_equals_the_live_state_after_many_operations(env):
    import random

    _path, s, pops = env
    put(s, 40, 0)
    put(s, 40, 1)
    rnd = random.Random(7)
    now = 0
    held = []
    for _ in range(60):
        now += rnd.choice([0, 50, 400])
        got, _ = pops.receive("G", "T", [rnd.randrange(2), 1], rnd.randint(1, 6), 300, now, 3)
        held += got
        rnd.shuffle(held)
        while held and rnd.random() < 0.5:
            r = held.pop()
            try:
                if rnd.random() < 0.7:
                    pops.ack("G", "T", r.handle)
                else:
                    pops.change_invisible("G", "T", r.handle, rnd.choice([0, 200]), now)
            except pc.PopError:
                pass  # stale: redelivered since
    assert s.wait_dispatched(s.max_physical_offset, 10)
    live = {k: v.to_json() for k, v in pops._live.items()}
    assert pops.load() == len(live)
    assert {k: v.to_json() for k, v in pops._live.items()} == live
