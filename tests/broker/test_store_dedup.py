"""Producer retries are stored once (MessageStore.put_batch_dedup on real files and rocksdict):
found in memory before dispatch, through the msg-id index after it, after a restart, and on a
follower that becomes master; not within the window or after a truncation: stored again."""

from __future__ import annotations

import pytest

from orbitmq.broker.store import Message, MessageStore, StoreConfig

SEG = 64 * 1024


def make(path, gate=None, **kw) -> MessageStore:
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=SEG, expiry_interval_s=0, **kw))
    if gate is not None:
        s.set_write_gate(gate)
    s.open()
    return s


def batch(prefix: str, n: int, queue_id: int = 0, topic: str = "T") -> list[Message]:
    return [Message(topic, f"{prefix}-{i}".encode() * 10, queue_id=queue_id, msg_id=f"{prefix}-{i:04d}")
            for i in range(n)]


def key(rs) -> list[tuple]:
    return [(r.physical_offset, r.queue_id, r.queue_offset, r.msg_id) for r in rs]


def test_retry_answered_with_the_original_receipts(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        first, dup = s.put_batch_dedup(batch("a", 3))
        assert not dup
        end = s.max_physical_offset
        again, dup = s.put_batch_dedup(batch("a", 3, queue_id=1))  # a retry may pick another queue
        assert dup and key(again) == key(first) and s.max_physical_offset == end
        early, _ = s.put_batch_dedup(batch("c", 4, queue_id=1))
        one, dup = s.put_batch_dedup(batch("b", 1))
        assert not dup and s.put_batch_dedup(batch("b", 1))[0][0].queue_offset == one[0].queue_offset
        # not a retry: other ids, a different sequence, no ids, ids reused after the window
        assert not s.put_batch_dedup(batch("a", 2) + batch("z", 1))[1]
        assert not s.put_batch_dedup([Message("T", b"x"), Message("T", b"y")])[1]
        assert not s.put_batch_dedup(batch("b", 1), now_ms=2**62)[1]
        # many more batches: the in-memory table is pruned, the msg-id index still answers
        for i in range(5000):
            s.put_batch_dedup(batch(f"f{i}", 1, queue_id=1))
        assert s.wait_dispatched(s.max_physical_offset, 10)
        end = s.max_physical_offset
        again, dup = s.put_batch_dedup(batch("c", 4))
        assert dup and key(again) == key(early) and s.max_physical_offset == end
        bodies = [m.body for m in s.get_messages("T", 1, 0, 100).messages]
        assert bodies.count(b"c-0" * 10) == 1
    finally:
        s.close()


def test_a_follower_that_becomes_master_knows_its_predecessors_sends(tmp_path) -> None:
    role = {"f": False}
    m = make(tmp_path / "m", gate=lambda: True, auto_confirm=False)
    f = make(tmp_path / "f", gate=lambda: role["f"], auto_confirm=False)
    try:
        m.put_batch_dedup(batch("x", 5))
        orig, _ = m.put_batch_dedup(batch("y", 2, queue_id=2))
        f.append_raw(0, m.read_raw(0, 1 << 20))  # replicated, not confirmed: not indexed on f
        assert f.dispatched_offset == 0
        with pytest.raises(Exception, match="not master"):
            f.put_batch_dedup(batch("y", 2))
        role["f"] = True  # failover: f is master now, the producer retries there
        end = f.max_physical_offset
        again, dup = f.put_batch_dedup(batch("y", 2))
        assert dup and key(again) == key(orig) and f.max_physical_offset == end
        # a restart with the tail still undispatched: found again by the scan of the tail
        f.close()
        f = make(tmp_path / "f", gate=lambda: True, auto_confirm=False)
        again, dup = f.put_batch_dedup(batch("y", 2))
        assert dup and key(again) == key(orig)
        # truncated away (never confirmed): the retry is a new send
        f.truncate(orig[0].physical_offset)
        new, dup = f.put_batch_dedup(batch("y", 2))
        assert not dup and new[0].physical_offset == orig[0].physical_offset
    finally:
        m.close()
        f.close()
