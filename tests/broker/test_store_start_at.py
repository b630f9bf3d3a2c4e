"""`MessageStore.start_log_at`: a replica joins a master whose oldest segments expired. The empty
store starts its log at the master's first retained offset, copies the master's bytes from there
(byte-identical segments), rebuilds the same consume queues (minimums at the first retained
message), the metadata from the master's snapshot, survives a restart, and finishes an
interrupted start (the RESTARTING marker) on open. A master refuses it."""

from __future__ import annotations

import os

import pytest

from orbitmq.broker.store import Message, MessageStore, StoreConfig
from orbitmq.broker.store.errors import LocalWriteRefused
from orbitmq.broker.store.message_store import RESTARTING
from tests.broker.test_store_follower import replicate

SEG = 64 * 1024


def make(path, master: bool) -> MessageStore:
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=SEG, expiry_interval_s=0, retention_hours=1.0,
                                 auto_confirm=True))
    s.set_write_gate(lambda: master)
    s.open()
    return s


def seg_bytes(s: MessageStore) -> dict[int, bytes]:
    out = {}
    for path, base, end in s.log.segment_files():
        with open(path, "rb") as fh:
            out[base] = fh.read(min(end, s.max_physical_offset) - base)
    return out


def expired_master(path) -> MessageStore:
    m = make(path, master=True)
    m.put_topic_config("T", {"q": 2})
    m.put_subscription_group("G", {"retry_max_times": 3})
    m.commit_offset("G", "T", 0, 5)
    for i in range(900):
        m.put(Message("T", f"m-{i:05d}".encode().ljust(300, b"."), queue_id=i % 2))
    m.commit_offset("G", "T", 1, 7)
    assert m.wait_dispatched(m.max_physical_offset, 10) and m.wait_flushed(m.max_physical_offset, 10)
    later = os.stat(m.log.segments[-1].path).st_mtime + 7200
    assert m.expire(now=later, disk_usage=(1, 100)) >= 2   # writes its metadata snapshot first
    assert m.min_physical_offset >= 2 * SEG
    m.put_batch([Message("T", b"after-expiry", queue_id=0)])
    assert m.wait_dispatched(m.max_physical_offset, 10)
    return m


def test_an_empty_replica_starts_at_the_masters_first_offset_and_ends_identical(tmp_path) -> None:
    m = expired_master(tmp_path / "m")
    f = make(tmp_path / "f", master=False)
    try:
        start = m.min_physical_offset
        f.start_log_at(start)
        assert f.min_physical_offset == start == f.max_physical_offset
        replicate(m, f)
        assert f.wait_dispatched(f.max_physical_offset, 10)
        assert seg_bytes(f) == seg_bytes(m)                     # byte for byte, from the first retained offset
        for q in (0, 1):
            assert f.min_offset("T", q) == m.min_offset("T", q) > 0
            assert f.max_offset("T", q) == m.max_offset("T", q)
            a = f.get_messages("T", q, f.min_offset("T", q), 1000, 1 << 24)
            b = m.get_messages("T", q, m.min_offset("T", q), 1000, 1 << 24)
            assert [x.body for x in a.messages] == [x.body for x in b.messages] and a.messages
            assert f.get_messages("T", q, 0, 10, 1 << 20).status.name == "OFFSET_MOVED"
        # metadata came with the master's snapshot record
        assert f.get_topic_config("T") == {"q": 2}
        assert f.get_subscription_group("G") == {"retry_max_times": 3}
        assert f.query_offset("G", "T", 0) == 5 and f.query_offset("G", "T", 1) == 7
        # it survives a restart, and keeps following
        f.close()
        f = make(tmp_path / "f", master=False)
        assert f.min_physical_offset == start
        m.put(Message("T", b"later", queue_id=1))
        replicate(m, f)
        assert seg_bytes(f) == seg_bytes(m)
        assert f.wait_dispatched(f.max_physical_offset, 10) and m.wait_dispatched(m.max_physical_offset, 10)
        assert f.max_offset("T", 1) == m.max_offset("T", 1)   # both indexed "later"
    finally:
        f.close()
        m.close()


def test_a_lagging_replica_drops_everything_and_an_interrupted_start_finishes_on_open(tmp_path) -> None:
    m = make(tmp_path / "m", master=True)
    f = make(tmp_path / "f", master=False)
    try:
        m.put_topic_config("T", {"q": 1})
        m.put_batch([Message("T", b"x" * 300, queue_id=0) for _ in range(300)])
        replicate(m, f)
        assert f.wait_dispatched(f.max_physical_offset, 10)
        f.close()
        m.close()
        m = expired_master(tmp_path / "m2")
        f = make(tmp_path / "f", master=False)
        # a crash right after the marker was written: open() finishes the job
        with open(os.path.join(str(tmp_path / "f"), RESTARTING), "w") as fh:
            fh.write(str(m.min_physical_offset))
        f.close()
        f = make(tmp_path / "f", master=False)
        assert f.min_physical_offset == f.max_physical_offset == m.min_physical_offset
        assert f.get_topic_config("T") is None and f.max_offset("T", 0) == 0   # nothing old is left
        assert not os.path.exists(os.path.join(str(tmp_path / "f"), RESTARTING))
        replicate(m, f)
        assert seg_bytes(f) == seg_bytes(m)
        assert f.wait_dispatched(f.max_physical_offset, 10) and f.get_topic_config("T") == {"q": 2}
        # a master never empties itself
        with pytest.raises(LocalWriteRefused):
            m.start_log_at(0)
        with pytest.raises(ValueError):
            f.start_log_at(-1)
    finally:
        f.close()
        m.close()
