"""Dispatcher hints: the store's one-message appends hand the dispatcher the index fields they
already know (dispatcher.hints), so it need not read and parse those records back. The indexes
must be exactly those built by reading the log, and a hint that does not match the stored bytes
(crc, size, magic) must be ignored. Real files and rocksdict."""

from __future__ import annotations

from orbitmq.broker.store import GetStatus, Message, MessageStore, StoreConfig

SEG = 64 * 1024


class NoHints(dict):
    """A hints table that keeps nothing: the dispatcher reads every record back (the reference)."""

    def __setitem__(self, k, v) -> None:
        pass


def make(path) -> MessageStore:
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=SEG, expiry_interval_s=0))
    s.open()
    return s


def msgs(start: int, n: int, size: int = 700) -> list[Message]:
    return [Message("T" if i % 3 else "U", f"m{i:05d}".encode() + b"x" * (size + i % 50), queue_id=i % 4,
                    tags="" if i % 5 == 0 else f"tag{i % 3}", keys=[f"k{i}", f"q{i % 7}"] if i % 2 else [],
                    properties={"p": str(i)} if i % 4 == 0 else {}, msg_id=f"ID{i:06d}", born_timestamp=1000 + i,
                    born_host="10.0.0.1:5")
            for i in range(start, start + n)]


def index(s: MessageStore) -> dict[bytes, bytes]:
    return dict(s.db.scan(b"")) | dict(s.db.scan(b"\x00"))


def fill(s: MessageStore) -> None:
    for i in range(0, 150, 1):                  # one-message sends (the sync send path)
        s.put_batch_dedup(msgs(i, 1))
    s.put_batch(msgs(150, 120))                   # one put of many records, across segment ends
    s.put_topic_config("T", {"queues": 4})        # a META record between them
    for i in range(270, 300):
        s.put_batch_dedup(msgs(i, 1))
    assert s.wait_dispatched(s.max_physical_offset, 30)


def test_hinted_indexes_equal_the_indexes_read_from_the_log(tmp_path) -> None:
    a, b = make(tmp_path / "a"), make(tmp_path / "b")
    try:
        b.dispatcher.hints = NoHints()
        fill(a)
        fill(b)
        assert a.max_physical_offset == b.max_physical_offset
        assert a.dispatcher.hinted > 0 and b.dispatcher.hinted == 0
        assert index(a) == index(b)
        assert a.dispatcher.qmax == b.dispatcher.qmax and a.dispatcher.qmin == b.dispatcher.qmin
        assert [m.body for m in a.query_by_key("T", "k7")] == [msgs(7, 1)[0].body]
        assert a.query_by_msg_id("ID000200").body == msgs(200, 1)[0].body
        got = a.get_messages("T", 1, 0, 5, tags={"tag1"})
        assert got.status == GetStatus.FOUND and all(m.tags == "tag1" for m in got.messages)
    finally:
        a.close()
        b.close()


def test_a_hint_that_does_not_match_the_stored_record_is_not_used(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        d = s.dispatcher
        d.stop()                                  # only this test's rounds dispatch
        d._stop = False
        s.put_batch_dedup(msgs(1, 1))
        off = min(d.hints)
        crc, total, topic, qid, qoff, th, keys, mid = d.hints[off]
        d.hints[off] = (crc ^ 1, total, topic, qid, qoff, th, ["wrong"], "WRONG")   # not these bytes
        with d.lock:
            assert d.dispatch_once() == 1
        assert d.hinted == 0
        assert s.query_by_msg_id("WRONG") is None and s.query_by_key("T", "wrong") == []
        assert s.query_by_msg_id("ID000001").body == msgs(1, 1)[0].body
        assert [m.msg_id for m in s.query_by_key("T", "k1")] == ["ID000001"]
    finally:
        s.close()


def test_truncated_and_rewritten_records_are_indexed_from_their_new_bytes(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        rs = [s.put_batch_dedup(msgs(i, 1))[0][0] for i in range(40)]
        assert s.wait_dispatched(s.max_physical_offset, 30)
        cut = rs[20].physical_offset
        d = s.dispatcher
        d.stop()
        d._stop = False
        stale = msgs(20, 1)[0]
        old_hint = (rs[20].physical_offset, rs[20].size)
        s.truncate(cut)
        assert not d.hints                        # truncation drops them
        d.hints = NoHints()
        new = Message("T", b"rewritten" * 30, queue_id=stale.queue_id, keys=["fresh"], msg_id="NEW")
        s.put_batch_dedup([new])                  # written where the cut record was, with no hint of its own
        # a hint left over from the record that was cut (as if truncation had kept them)
        d.hints = {cut: (0, old_hint[1], "T", stale.queue_id, 20, 0, ["stale"], "STALE")}
        hinted = d.hinted
        with d.lock:
            d.dispatch_once()
        assert d.hinted == hinted
        assert s.query_by_msg_id("NEW").body == new.body and s.query_by_msg_id("STALE") is None
        assert s.query_by_key("T", "stale") == [] and [m.msg_id for m in s.query_by_key("T", "fresh")] == ["NEW"]
        assert s.query_by_msg_id("ID000025") is None
    finally:
        s.close()
