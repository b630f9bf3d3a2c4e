"""Batch records in a real store (real files, real rocksdict): one commitlog record per batch,
reads from any message inside one, filters and queries, dedup, follower copies and truncation at
a batch boundary, expiry, corruption, and a log of one-message (old-format) records opening and
mixing with batches."""

from __future__ import annotations

import os

import pytest

from orbitmq.broker.names import NameError_
from orbitmq.broker.store import CorruptRecord, GetStatus, Message, MessageStore, StoreConfig
from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store import record as rc
from orbitmq.broker.store.errors import BadMessage, EmptyBody, LocalWriteRefused, MessageTooLarge

T = "BatchT"


def _store(path, **kw) -> MessageStore:
    kw.setdefault("expiry_interval_s", 0)
    s = MessageStore(StoreConfig(store_dir=str(path), **kw))
    s.open()
    s.put_topic_config(T, {"read_queues": 2, "write_queues": 2, "perm": 6})
    return s


def _batch(n: int, first: int = 0, prefix: str = "AB12", tags=None, keys=None, size: int = 10, **kw) -> bytes:
    bodies = [f"m{first + i}-".encode().ljust(size, b".") for i in range(n)]
    if "msg_ids" not in kw:
        kw.update(id_prefix=prefix, id_first=first)
    return br.encode(T, bodies, tags=tags, keys=keys, born_ts=1, born_host="h:1", **kw)


def _all(s: MessageStore, q: int = 0, start: int = 0) -> list[Message]:
    assert s.wait_dispatched(s.max_physical_offset, 20)
    out, off = [], start
    while True:
        r = s.get_messages(T, q, off, 7, 1 << 20)
        if r.status != GetStatus.FOUND:
            return out
        out += r.messages
        off = r.next_offset


def test_one_record_per_batch_offsets_and_reads_from_inside(tmp_path) -> None:
    s = _store(tmp_path / "s")
    try:
        r1, dup = s.put_batch_record(_batch(5), 0)
        r2, _ = s.put_batch_record(_batch(4, first=5), 0)
        assert not dup and (r1.base_queue_offset, r1.count, r2.base_queue_offset) == (0, 5, 5)
        recs = [(off, magic) for off, magic, _ in s.log.records(r1.physical_offset)]
        assert recs == [(r1.physical_offset, rc.MAGIC_BATCH), (r2.physical_offset, rc.MAGIC_BATCH)]
        assert s.wait_dispatched(r2.end_offset, 20) and s.max_offset(T, 0) == 9
        for start in range(9):
            for k in (1, 2, 6):
                r = s.get_messages(T, 0, start, k)
                want = list(range(start, min(9, start + k)))
                assert [m.queue_offset for m in r.messages] == want
                assert [m.body[:3] for m in r.messages] == [f"m{i}-".encode()[:3] for i in want]
                assert r.next_offset == want[-1] + 1
                raw = s.get_raw(T, 0, start, k)   # whole batches: from `start` to the end of its batch at least
                end_of_batch = 5 if start < 5 else 9
                assert raw.next_offset == (end_of_batch if start + k <= end_of_batch else 9)
                assert raw.count == raw.next_offset - start
                assert all(isinstance(x, bytes) for x in raw.items)
        m = s.get_messages(T, 0, 6, 1).messages[0]
        assert m.msg_id == br.format_id("AB12", 6) and m.physical_offset == r2.physical_offset
    finally:
        s.close()


def test_tag_filter_key_and_id_queries_on_batches(tmp_path) -> None:
    s = _store(tmp_path / "s")
    try:
        s.put_batch_record(_batch(4, tags=["red"] * 4, keys=[["k-a"], [], ["k-b"], ["k-a", "k-c"]]), 0)
        s.put_batch_record(_batch(4, first=4, tags=["blue", "", "red", "blue"]), 0)   # mixed tags
        s.put_batch_record(_batch(3, first=8, tags=["green"] * 3), 0)
        explicit = _batch(2, msg_ids=["user-id-1", "user-id-2"], keys=[["k-a"], ["k-z"]])
        s.put_batch_record(explicit, 0)
        assert s.wait_dispatched(s.max_physical_offset, 20)
        got = s.get_messages(T, 0, 0, 100, tags={"red"})
        assert [m.queue_offset for m in got.messages] == [0, 1, 2, 3, 6] and got.next_offset == 13
        got = s.get_messages(T, 0, 2, 100, tags={"blue", "green"})
        assert [m.queue_offset for m in got.messages] == [4, 7, 8, 9, 10]
        assert [m.tags for m in got.messages] == ["blue", "blue", "green", "green", "green"]
        raw = s.get_raw(T, 0, 0, 100, tags={"blue"})   # uniform red/green batches are skipped whole
        assert len(raw.items) == 1 and raw.count == 2 and br.parse(raw.items[0]).base_queue_offset == 4
        assert [m.queue_offset for m in s.query_by_key(T, "k-a")] == [0, 3, 11]
        assert [m.body[:3] for m in s.query_by_key(T, "k-c")] == [b"m3-"]
        assert s.query_by_key(T, "k-none") == []
        for i in range(11):
            m = s.query_by_msg_id(br.format_id("AB12", i))
            assert m is not None and m.queue_offset == i
        assert s.query_by_msg_id(br.format_id("AB12", 11)) is None  # past the last compact range
        assert s.query_by_msg_id("user-id-2").queue_offset == 12
    finally:
        s.close()


def test_commit_and_resume_in_the_middle_of_a_batch(tmp_path) -> None:
    d = tmp_path / "s"
    s = _store(d)
    s.put_batch_record(_batch(10), 1)
    assert s.wait_dispatched(s.max_physical_offset, 20)
    first = s.get_messages(T, 1, 0, 3).messages
    s.commit_offset("G", T, 1, first[-1].queue_offset + 1)
    s.close()
    s = _store(d)
    try:
        off = s.query_offset("G", T, 1)
        assert off == 3
        rest = _all(s, 1, off)
        assert [m.queue_offset for m in rest] == list(range(3, 10))
        assert [m.body[:3] for m in rest] == [f"m{i}-".encode()[:3] for i in range(3, 10)]
    finally:
        s.close()


def test_retry_of_a_batch_is_answered_with_the_original_also_after_restart(tmp_path) -> None:
    d = tmp_path / "s"
    s = _store(d)
    data = _batch(6)
    r1, dup1 = s.put_batch_record(data, 0)
    r2, dup2 = s.put_batch_record(data, 0)
    assert (dup1, dup2) == (False, True) and r2 == r1
    s.close()
    s = _store(d)
    try:
        r3, dup3 = s.put_batch_record(data, 0)
        assert dup3 and r3 == r1
        r4, dup4 = s.put_batch_record(data, 0, dedupe=False)
        assert not dup4 and r4.base_queue_offset == 6
        assert len(_all(s)) == 12
    finally:
        s.close()


def test_bad_batches_are_refused_before_anything_is_written(tmp_path) -> None:
    s = _store(tmp_path / "s")
    try:
        end = s.max_physical_offset
        good = _batch(3)
        bad = bytearray(good)
        bad[-1] ^= 1
        with pytest.raises(BadMessage, match="crc"):
            s.put_batch_record(bytes(bad), 0)
        with pytest.raises(EmptyBody):
            s.put_batch_record(br.encode(T, [b"x", b""], id_prefix="P"), 0)
        with pytest.raises(MessageTooLarge):
            s.put_batch_record(_batch(2, size=100), 0, max_body=50)
        with pytest.raises(MessageTooLarge, match="smaller batches"):
            s.put_batch_record(_batch(3, size=3 << 20), 0)
        with pytest.raises(NameError_) as e:
            s.put_batch_record(br.encode("bad topic!", [b"x"], id_prefix="P"), 0)
        assert e.value.code == "BAD_TOPIC_NAME"
        with pytest.raises(NameError_) as e:
            s.put_batch_record(br.encode(T, [b"x"], tags=["a||b"], id_prefix="P"), 0)
        assert e.value.code == "BAD_TAG"
        assert s.max_physical_offset == end
    finally:
        s.close()


def test_follower_copies_batches_and_truncates_at_a_batch_boundary(tmp_path) -> None:
    m = _store(tmp_path / "m", segment_size=64 * 1024)
    f = MessageStore(StoreConfig(store_dir=str(tmp_path / "f"), segment_size=64 * 1024, expiry_interval_s=0))
    f.open()
    try:
        rs = [m.put_batch_record(_batch(20, first=20 * i, size=300, tags=[f"t{i}"] * 20), 0)[0] for i in range(12)]
        # replicate in small frames: read_raw never splits a batch (b"" if the next one is bigger)
        assert m.read_raw(rs[0].physical_offset, rs[0].size - 1) == b""
        pos = 0
        while pos < m.max_physical_offset:
            chunk = m.read_raw(pos, 10_000)
            assert chunk
            pos = f.append_raw(pos, chunk)
        assert pos == m.max_physical_offset and len(f.log.segments) > 1
        assert [x.msg_id for x in _all(f)] == [x.msg_id for x in _all(m)]
        # a failover cuts the follower's tail at a batch boundary (where a record starts)
        cut = rs[7].physical_offset
        f.truncate(cut)
        assert f.max_physical_offset == cut and f.max_offset(T, 0) == rs[7].base_queue_offset
        assert [x.queue_offset for x in _all(f)] == list(range(140))
        assert f.query_by_msg_id(br.format_id("AB12", 150)) is None
        assert f.query_by_msg_id(br.format_id("AB12", 139)).queue_offset == 139
        assert f.get_messages(T, 0, 0, 200, tags={"t9"}).messages == []
        # the new master's bytes continue the log at the cut; offsets follow on from the cut batch
        m2 = MessageStore(StoreConfig(store_dir=str(tmp_path / "m2"), segment_size=64 * 1024, expiry_interval_s=0))
        m2.open()
        try:
            pos = 0
            while pos < cut:
                pos = m2.append_raw(pos, f.read_raw(pos, 10_000))
            m2.put_batch_record(_batch(5, first=1000, prefix="CD34"), 0)
            chunk = m2.read_raw(cut, 1 << 20)
            f.append_raw(cut, chunk)
            got = _all(f)
            assert [x.queue_offset for x in got] == list(range(145))
            assert got[-1].msg_id == br.format_id("CD34", 1004)
        finally:
            m2.close()
        f.close()
        f.open()   # restart: the truncation and the new tail are durable
        assert f.max_offset(T, 0) == 145 and f.verify() == []
    finally:
        m.close()
        f.close()


def test_write_gate_refuses_local_batches_on_a_follower(tmp_path) -> None:
    s = _store(tmp_path / "s")
    try:
        s.set_write_gate(lambda: False)
        with pytest.raises(LocalWriteRefused):
            s.put_batch_record(_batch(2), 0)
    finally:
        s.close()


def test_old_format_log_opens_and_mixes_with_batches(tmp_path) -> None:
    """A log of one-message records (the format every earlier version wrote) opens unchanged;
    batches append after it and reads cross from one kind to the other in queue order."""
    d = tmp_path / "s"
    s = _store(d)
    for i in range(5):
        s.put(Message(T, f"old{i}".encode(), queue_id=0, tags="red", keys=[f"ok{i}"]))
    assert s.wait_dispatched(s.max_physical_offset, 20)
    s.close()
    s = _store(d)
    try:
        assert s.verify() == [] and s.max_offset(T, 0) == 5
        s.put_batch_record(_batch(3, first=0, tags=["red", "blue", "red"]), 0)
        s.put(Message(T, b"old5", queue_id=0))
        got = _all(s)
        assert [m.queue_offset for m in got] == list(range(9))
        assert [m.body[:4] for m in got] == [b"old0", b"old1", b"old2", b"old3", b"old4", b"m0-.", b"m1-.", b"m2-.",
                                             b"old5"]
        assert [m.queue_offset for m in s.get_messages(T, 0, 3, 10, tags={"red"}).messages] == [3, 4, 5, 7]
        assert s.query_by_key(T, "ok2")[0].body == b"old2"
        raw = s.get_raw(T, 0, 4, 10)
        assert [type(x).__name__ for x in raw.items] == ["Message", "bytes", "Message"]
    finally:
        s.close()


def test_corrupt_batch_is_never_returned(tmp_path) -> None:
    d = tmp_path / "s"
    s = _store(d)
    r1, _ = s.put_batch_record(_batch(4), 0)
    r2, _ = s.put_batch_record(_batch(4, first=4), 0)
    assert s.wait_dispatched(s.max_physical_offset, 20)
    seg = s.log.segments[0]
    seg.mm[r1.physical_offset - seg.base + r1.size - 2] ^= 0xFF   # inside the first batch's bodies
    try:
        with pytest.raises(CorruptRecord):
            s.get_messages(T, 0, 1, 10)
        with pytest.raises(CorruptRecord):
            s.get_raw(T, 0, 0, 10)
        assert [m.queue_offset for m in s.get_messages(T, 0, 4, 10).messages] == [4, 5, 6, 7]
        assert [c.offset for c in s.verify()] == [r1.physical_offset]
    finally:
        s.close()


def test_torn_batch_at_the_tail_is_cut_on_open(tmp_path) -> None:
    d = tmp_path / "s"
    s = _store(d)
    r1, _ = s.put_batch_record(_batch(4), 0)
    r2, _ = s.put_batch_record(_batch(40, first=4, size=200), 0)
    s.close()
    path = os.path.join(str(d), "commitlog", f"{0:020d}")
    with open(path, "r+b") as f:   # the second batch half written, as a crash mid-write leaves it
        f.seek(r2.physical_offset + r2.size // 2)
        f.write(b"\0" * (r2.size - r2.size // 2))
    s = MessageStore(StoreConfig(store_dir=str(d), expiry_interval_s=0))
    s.open()
    try:
        assert s.max_physical_offset == r2.physical_offset and s.verify() == []
        assert [m.queue_offset for m in _all(s)] == [0, 1, 2, 3]
        r3, _ = s.put_batch_record(_batch(2, first=100), 0)
        assert r3.base_queue_offset == 4
    finally:
        s.close()


def test_expiry_moves_queue_minimum_to_a_batch_boundary(tmp_path) -> None:
    s = _store(tmp_path / "s", segment_size=64 * 1024)
    try:
        rs = [s.put_batch_record(_batch(10, first=10 * i, size=1000), 0)[0] for i in range(20)]
        assert s.wait_dispatched(s.max_physical_offset, 20) and s.wait_flushed(s.max_physical_offset, 20)
        first_seg_end = s.log.segments[0].end
        assert s.expire(now=10**10) >= 1
        mn = s.min_offset(T, 0)
        assert mn % 10 == 0 and mn > 0
        assert all(r.physical_offset >= first_seg_end for r in rs if r.base_queue_offset >= mn)
        assert s.get_messages(T, 0, 0, 5).status == GetStatus.OFFSET_MOVED
        got = _all(s, 0, mn)
        assert [m.queue_offset for m in got] == list(range(mn, 200))
    finally:
        s.close()


def test_resending_the_same_messages_with_their_ids_spelled_out_is_a_retry(tmp_path) -> None:
    """The producer writes a batch's compact ids back to its messages: sending those objects again
    builds a record with explicit ids, to any queue; it is answered with the original offsets."""
    s = _store(tmp_path / "s")
    try:
        r1, dup1 = s.put_batch_record(_batch(5, prefix="CAFE"), 0)
        again = _batch(5, msg_ids=[br.format_id("CAFE", i) for i in range(5)])
        r2, dup2 = s.put_batch_record(again, 1)
        assert (dup1, dup2) == (False, True) and r2 == r1
        assert len(_all(s, 0)) == 5 and _all(s, 1) == []
    finally:
        s.close()
