"""Batch records with real processes: a writer SIGKILLed in the middle of batch appends loses no
flushed batch and leaves no torn batch readable; and through a real broker, the client's batches
(one record each) can be consumed, committed and resumed from the middle of a batch, filtered by
tag and found by key and by message id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from orbitmq.broker.store import GetStatus, MessageStore, StoreConfig
from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store import record as rc
from orbitmq.common import net
from orbitmq.common.proc import wait_until
from orbitmq.protos import broker_pb2, broker_pb2_grpc

pytestmark = pytest.mark.process

HELPER = Path(__file__).with_name("batch_kill_writer.py")
SEG = 512 * 1024


def _run_and_kill(store_dir: Path, mode: str, min_acks: int) -> list[tuple]:
    err_path = store_dir.parent / f"batch_kill_writer-{mode}.err"
    with open(err_path, "ab") as err:
        p = subprocess.Popen([sys.executable, str(HELPER), str(store_dir), str(SEG), mode],
                             stdout=subprocess.PIPE, stderr=err, text=True)
    acks: list[tuple] = []
    try:
        assert p.stdout.readline().strip() == "READY", err_path.read_text()
        done = threading.Event()

        def reader() -> None:
            for line in p.stdout:
                parts = line.split()
                if len(parts) == 8 and parts[0] == "ACK":
                    acks.append((*map(int, parts[1:7]), [int(x) for x in parts[7].split(",")]))
            done.set()

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + 90
        while len(acks) < min_acks and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.01)
        assert p.poll() is None, err_path.read_text()
        os.kill(p.pid, signal.SIGKILL)  # in the middle of batch appends from four threads
        p.wait(10)
        done.wait(10)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
    assert len(acks) >= min_acks
    return acks


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sigkill_mid_batch_loses_no_flushed_batch_and_returns_no_torn_one(tmp_path, mode: str) -> None:
    d = tmp_path / "store"
    acks = _run_and_kill(d, mode, 150)
    acks += _run_and_kill(d, mode, 60)  # a second life on the recovered store, killed again
    s = MessageStore(StoreConfig(store_dir=str(d), segment_size=SEG, expiry_interval_s=0))
    s.open()
    try:
        assert s.verify() == []   # every record left in the log is whole (both CRCs hold)
        assert len(s.log.segments) > 2
        for phys, _end, _qid, base, count, first, sizes in acks:
            ms = s.messages_at(phys)
            assert len(ms) == count and ms[0].physical_offset == phys
            assert [m.queue_offset for m in ms] == list(range(base, base + count))
            assert [m.msg_id for m in ms] == [br.format_id("KILL", first + i) for i in range(count)]
            assert [len(m.body) for m in ms] == sizes and ms[0].body.startswith(f"b{first}-".encode())
        assert s.wait_dispatched(s.max_physical_offset, 60)
        # each queue is gap-free, and every acknowledged batch is at its acknowledged offsets
        for q in range(4):
            off, seen = 0, {}
            while True:
                r = s.get_messages("KillBatch", q, off, 1000, 1 << 26)
                if r.status != GetStatus.FOUND:
                    break
                for m in r.messages:
                    seen[m.queue_offset] = m.msg_id
                off = r.next_offset
            assert sorted(seen) == list(range(len(seen)))
            for _phys, _end, qid, base, count, first, _sizes in acks:
                if qid == q:
                    assert [seen[base + i] for i in range(count)] == [br.format_id("KILL", first + i)
                                                                     for i in range(count)]
        # no torn batch anywhere: every record from the log start is whole
        kinds = {magic for _off, magic, _b in s.log.records(s.log.min_offset)}
        assert rc.MAGIC_BATCH in kinds
    finally:
        s.close()


# ---- through a real broker ---------------------------------------------------------------------------

@pytest.fixture
def broker(procs, tmp_path):
    ns = f"127.0.0.1:{net.free_port()}"
    procs.start("namesrv", ["namesrv", "--listen", ns])
    net.wait_for_port(ns, 30)
    addr = f"127.0.0.1:{net.free_port()}"
    procs.start("broker", ["broker", "--listen", addr, "--namesrv", ns, "--store-dir", str(tmp_path / "store"),
                           "--broker-set", "bb", "--set", "register_interval_s=0.5",
                           "--set", "keepalive_interval_s=0.3"])
    net.wait_for_port(addr, 30)
    from orbitmq.client import Admin

    with Admin(ns) as admin:
        wait_until(lambda: admin.cluster_list(), 30, what="broker registered")
        admin.create_topic("BatchE2E", 2)
    return ns, addr


def test_consumer_commits_and_resumes_in_the_middle_of_a_batch(broker) -> None:
    from orbitmq.client import Message, Producer, PullConsumer

    ns, _ = broker
    with Producer(ns) as p:
        rs = p.send_batch([Message("BatchE2E", f"m{i}".encode()) for i in range(10)],
                          selector=lambda qs, m, a: qs[0])
    q = rs[0].queue
    assert [r.queue_offset for r in rs] == list(range(10)) and len({r.physical_offset for r in rs}) == 1
    c = PullConsumer("g-mid", ns, auto_commit=False, max_poll_messages=4)
    c.assign([q])
    got: list = []
    try:
        while len(got) < 4:
            got += c.poll(10.0)
        assert [m.body for m in got] == [b"m0", b"m1", b"m2", b"m3"]
        c.commit()   # offset 4: inside the batch of ten
    finally:
        c.close()
    c = PullConsumer("g-mid", ns, auto_commit=False, max_poll_messages=100)
    c.assign([q])
    rest: list = []
    try:
        deadline = time.monotonic() + 30
        while len(rest) < 6 and time.monotonic() < deadline:
            rest += c.poll(2.0)
    finally:
        c.close()
    assert [m.body for m in rest] == [f"m{i}".encode() for i in range(4, 10)]
    assert [m.queue_offset for m in rest] == list(range(4, 10))
    assert [m.msg_id for m in rest] == [r.msg_id for r in rs[4:]]


def test_tag_filter_key_and_id_queries_on_batched_messages(broker) -> None:
    from orbitmq.client import ConsumeStatus, Message, Producer, PushConsumer

    ns, addr = broker
    with Producer(ns) as p:
        msgs = [Message("BatchE2E", f"b{i}".encode(), tags=("red" if i % 3 == 0 else "blue"), keys=[f"key{i % 4}"],
                        properties={"n": str(i)}) for i in range(12)]
        rs = p.send_batch(msgs, selector=lambda qs, m, a: qs[1])
        futs = [p.send_async(Message("BatchE2E", f"a{i}".encode(), tags="red"), selector=lambda qs, m, a: qs[1])
                for i in range(5)]
        p.flush(30)
        assert all(f.exception() is None for f in futs)
    seen: list = []
    lock = threading.Lock()

    def listener(ms):
        with lock:
            seen.extend(ms)
        return ConsumeStatus.SUCCESS

    c = PushConsumer("g-red", ns, pull_batch=64)
    c.subscribe("BatchE2E", "red")
    c.register_listener(listener)
    c.start()
    try:
        wait_until(lambda: len(seen) >= 9, 60, what="the red messages")
        time.sleep(0.5)
    finally:
        c.shutdown()
    assert sorted(m.body for m in seen) == sorted([f"b{i}".encode() for i in range(0, 12, 3)] +
                                                  [f"a{i}".encode() for i in range(5)])
    assert all(m.tags == "red" for m in seen)
    by_body = {m.body: m for m in seen}
    assert by_body[b"b3"].properties == {"n": "3"} and by_body[b"b3"].keys == ["key3"]
    with grpc.insecure_channel(addr) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        r = stub.QueryMessageByKey(broker_pb2.QueryByKeyRequest(topic="BatchE2E", key="key1", max_messages=10),
                                   timeout=10)
        assert sorted(m.body for m in r.messages) == [b"b1", b"b5", b"b9"]
        for i in (0, 7, 11):
            r = stub.QueryMessageById(broker_pb2.QueryByIdRequest(msg_id=rs[i].msg_id), timeout=10)
            assert [m.body for m in r.messages] == [f"b{i}".encode()]
            assert r.messages[0].queue_offset == rs[i].queue_offset


def test_batch_too_big_for_one_record_goes_as_one_message_records(broker) -> None:
    from orbitmq.client import Message, Producer

    ns, _ = broker
    with Producer(ns) as p:
        big = [Message("BatchE2E", bytes([65 + i]) * (3 << 20)) for i in range(3)]   # 9 MiB > one record
        rs = p.send_batch(big, selector=lambda qs, m, a: qs[0])
        small = p.send_batch([Message("BatchE2E", b"s") for _ in range(3)], selector=lambda qs, m, a: qs[0])
    assert [r.queue_offset for r in rs] == [0, 1, 2] and len({r.physical_offset for r in rs}) == 3
    assert [r.queue_offset for r in small] == [3, 4, 5] and len({r.physical_offset for r in small}) == 1
