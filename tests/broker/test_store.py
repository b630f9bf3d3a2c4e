"""MessageStore on real files and a real rocksdict: appends, reads, metadata, recovery, indexes."""

from __future__ import annotations

import os
import shutil
import threading

import pytest

from orbitmq.broker.names import NameError_
from orbitmq.broker.store import GetStatus, Message, MessageStore, StoreConfig
from orbitmq.broker.store import index_store as ix
from orbitmq.broker.store.errors import BadMessage, CorruptRecord, OffsetMismatch

SEG = 64 * 1024


def make(path, **kw) -> MessageStore:
    cfg = StoreConfig(store_dir=str(path), segment_size=SEG, expiry_interval_s=0, **kw)
    s = MessageStore(cfg)
    s.open()
    return s


@pytest.fixture
def store(tmp_path):
    s = make(tmp_path / "s")
    yield s
    s.close()


def msgs(n: int, topic: str = "T", queues: int = 2, size: int = 100, start: int = 0) -> list[Message]:
    return [Message(topic, f"m{i:06d}".encode() + b"x" * size, queue_id=i % queues,
                    tags="odd" if i % 2 else "even", keys=[f"k{i}"]) for i in range(start, start + n)]


def settle(s: MessageStore) -> None:
    assert s.wait_dispatched(s.max_physical_offset, 10)


def bodies(s: MessageStore, topic: str, q: int) -> list[bytes]:
    out, off = [], s.min_offset(topic, q)
    while True:
        r = s.get_messages(topic, q, off, 64)
        if r.status != GetStatus.FOUND:
            return out
        out += [m.body for m in r.messages]
        off = r.next_offset


def db_dump(s: MessageStore) -> dict[bytes, bytes]:
    return {k: v for k, v in s.db.scan(b"")} | {k: v for k, v in s.db.scan(b"\x00")}


def test_put_get_offsets_and_statuses(store) -> None:
    store.put_topic_config("T", {"queues": 2})
    rs = store.put_batch(msgs(300))
    assert [r.queue_offset for r in rs[:4]] == [0, 0, 1, 1]
    assert all(rs[i].end_offset == rs[i + 1].physical_offset or rs[i + 1].physical_offset % SEG == 0
               for i in range(len(rs) - 1))
    assert len(store.log.segments) > 1  # rolled over segments with blank padding
    settle(store)
    assert store.max_offset("T", 0) == 150 and store.min_offset("T", 0) == 0
    r = store.get_messages("T", 0, 10, 5)
    assert r.status == GetStatus.FOUND and [m.queue_offset for m in r.messages] == [10, 11, 12, 13, 14]
    assert r.next_offset == 15 and r.messages[0].body.startswith(b"m000020")
    assert store.get_messages("T", 0, 150).status == GetStatus.NO_NEW
    assert store.get_messages("T", 0, 151).status == GetStatus.OFFSET_TOO_BIG
    assert store.get_messages("Nope", 0, 0).status == GetStatus.NO_QUEUE
    assert store.get_messages("T", 5, 0).status == GetStatus.NO_NEW  # a configured topic's empty queue
    # max_bytes: at least one message, never more than fits
    r = store.get_messages("T", 1, 0, 100, max_bytes=500)
    assert 1 <= len(r.messages) <= 500 // rs[0].size + 1
    assert len(bodies(store, "T", 1)) == 150
    m = store.get_by_physical_offset(rs[7].physical_offset)
    assert m.msg_id == rs[7].msg_id and m.keys == ["k7"]


def test_tag_filter_key_and_id_queries(store) -> None:
    rs = store.put_batch(msgs(40, queues=1))
    settle(store)
    r = store.get_messages("T", 0, 0, 5, tags={"odd"})
    assert [m.tags for m in r.messages] == ["odd"] * 5 and r.next_offset == 10
    r = store.get_messages("T", 0, 0, 5, tags={"none"})
    assert r.status == GetStatus.FOUND and r.messages == [] and r.next_offset == 40
    assert [m.body[:7] for m in store.query_by_key("T", "k3", 10)] == [b"m000003"]
    store.put(Message("T", b"again", keys=["k3"]))
    settle(store)
    assert [m.body[:7] for m in store.query_by_key("T", "k3", 10)] == [b"m000003", b"again"]
    assert store.query_by_key("Other", "k3", 10) == []
    assert store.query_by_msg_id(rs[5].msg_id).body.startswith(b"m000005")
    assert store.query_by_msg_id("nope") is None
    # a producer-supplied UNIQ key is kept
    r = store.put(Message("T", b"p", msg_id="PRODUCER-ID-1"))
    settle(store)
    assert r.msg_id == "PRODUCER-ID-1" and store.query_by_msg_id("PRODUCER-ID-1").body == b"p"
    assert len({r.msg_id for r in rs}) == len(rs)


def test_bad_names_are_refused_and_nothing_is_written(store) -> None:
    before = store.max_physical_offset
    with pytest.raises(NameError_) as e:
        store.put(Message("bad topic!", b"x"))
    assert e.value.code == "BAD_TOPIC_NAME"
    with pytest.raises(NameError_):
        store.put_batch([Message("T", b"x"), Message("T", b"y", tags="a||b")])
    with pytest.raises(NameError_):
        store.put(Message("T", b"x", keys=["has space"]))
    with pytest.raises(ValueError):
        store.put_topic_config("x" * 200, {})
    assert store.max_physical_offset == before


@pytest.mark.parametrize("field, value", [("reconsume_times", -1), ("flag", -5), ("sys_flag", 1 << 33),
                                          ("queue_id", 1 << 40), ("born_timestamp", -3)])
def test_out_of_range_numbers_are_refused_before_any_offset_is_used(store, field, value) -> None:
    before = store.max_physical_offset
    with pytest.raises(BadMessage, match=field.split("_")[0]):
        store.put_batch([Message("T", b"ok"), Message("T", b"bad", **{field: value})])
    assert store.max_physical_offset == before
    assert store.put(Message("T", b"next")).queue_offset == 0   # no offset was used up


def test_metadata_round_trip_and_restart(tmp_path) -> None:
    s = make(tmp_path / "s")
    s.put_topic_config("T", {"q": 4})
    s.put_topic_config("U", {"q": 1})
    assert s.get_topic_config("T") == {"q": 4} and set(s.list_topics()) == {"T", "U"}
    s.put_subscription_group("G", {"broadcast": False})
    s.commit_offset("G", "T", 0, 7)
    s.commit_offset("G", "T", 1, 9)
    s.commit_offset("H", "T", 0, 1)
    assert s.query_offset("G", "T", 0) == 7  # visible at once
    assert s.delete_topic("U") and not s.delete_topic("U")
    assert s.delete_subscription_group("G") is True
    assert s.offsets_of_group("G") == {} and s.query_offset("G", "T", 0) is None
    settle(s)
    s.close()
    s = make(tmp_path / "s")
    try:
        assert s.list_topics() == {"T": {"q": 4}}
        assert s.list_subscription_groups() == {}
        assert s.offsets_of_group("H") == {("T", 0): 1}
    finally:
        s.close()


def test_delete_topic_drops_queues_and_restarts_offsets(store) -> None:
    store.put_topic_config("T", {})
    store.put_batch(msgs(10, queues=1))
    store.commit_offset("G", "T", 0, 5)
    store.delete_topic("T")
    r = store.put(Message("T", b"new"))
    assert r.queue_offset == 0
    settle(store)
    assert store.max_offset("T", 0) == 1 and bodies(store, "T", 0) == [b"new"]
    assert store.query_offset("G", "T", 0) is None


def test_index_rebuild_after_deleting_the_index_db(tmp_path) -> None:
    s = make(tmp_path / "s")
    s.put_topic_config("T", {"q": 2})
    s.put_batch(msgs(500))
    s.commit_offset("G", "T", 0, 3)
    settle(s)
    before = db_dump(s)
    expect = bodies(s, "T", 0)
    s.close()
    shutil.rmtree(tmp_path / "s" / "index")
    s = make(tmp_path / "s")
    try:
        settle(s)
        assert bodies(s, "T", 0) == expect and len(expect) == 250
        assert db_dump(s) == before
        assert s.query_offset("G", "T", 0) == 3 and s.get_topic_config("T") == {"q": 2}
    finally:
        s.close()


def test_dispatcher_resumes_without_duplicates_or_gaps(tmp_path) -> None:
    s = make(tmp_path / "s", dispatch_batch_bytes=2000)
    s.put_batch(msgs(300, queues=1))
    # stop the dispatcher in the middle: reopen with a checkpoint part way through
    s.dispatcher.stop()
    s.dispatcher.dispatched = s.dispatcher.dispatched  # whatever it reached
    mid = s.dispatcher.dispatched
    s.flusher.stop()
    s.db.close()
    s.log.close()
    s._opened = False
    s = make(tmp_path / "s", dispatch_batch_bytes=2000)
    try:
        settle(s)
        got = bodies(s, "T", 0)
        assert [b[:7] for b in got] == [f"m{i:06d}".encode() for i in range(300)]
        assert s.dispatcher.rounds >= 1 or mid == s.max_physical_offset
        assert s.max_offset("T", 0) == 300
        r = s.put(Message("T", b"next"))
        assert r.queue_offset == 300
    finally:
        s.close()


def test_dispatch_checkpoint_is_in_the_same_batch(tmp_path) -> None:
    """Rewind the checkpoint by hand (as a crash between rounds would): re-dispatch changes nothing."""
    s = make(tmp_path / "s")
    s.put_batch(msgs(200, queues=2))
    settle(s)
    before = db_dump(s)
    s.close()
    db = ix.IndexStore(str(tmp_path / "s" / "index"))
    wb = db.batch()
    wb.put(ix.CHECKPOINT, ix.pack_q(0))
    db.write(wb)
    db.close()
    s = make(tmp_path / "s")
    try:
        settle(s)
        assert db_dump(s) == before
        assert s.max_offset("T", 0) == 100 and len(bodies(s, "T", 0)) == 100
    finally:
        s.close()


def test_confirm_offset_gates_visibility(tmp_path) -> None:
    s = make(tmp_path / "s", auto_confirm=False)
    try:
        rs = s.put_batch(msgs(20, queues=1))
        assert not s.wait_dispatched(rs[0].end_offset, 0.2)
        assert s.get_messages("T", 0, 0).status == GetStatus.NO_QUEUE
        s.set_confirm_offset(rs[9].end_offset)
        assert s.wait_dispatched(rs[9].end_offset, 5)
        assert s.max_offset("T", 0) == 10 and len(bodies(s, "T", 0)) == 10
        assert s.query_by_msg_id(rs[15].msg_id) is None
        s.set_auto_confirm(True)
        settle(s)
        assert s.max_offset("T", 0) == 20
    finally:
        s.close()


def test_raw_replication_yields_identical_indexes(tmp_path) -> None:
    m = make(tmp_path / "m")
    f = make(tmp_path / "f")
    try:
        m.put_topic_config("T", {"q": 2})
        m.put_subscription_group("G", {})
        m.put_batch(msgs(400))
        m.commit_offset("G", "T", 1, 17)
        m.append_meta_snapshot()
        m.put_batch(msgs(50, start=400))
        pos = 0
        while pos < m.max_physical_offset:
            chunk = m.read_raw(pos, 5000)
            assert chunk, "read_raw returned nothing below the end"
            assert f.append_raw(pos, chunk) == pos + len(chunk)
            pos += len(chunk)
        settle(m)
        settle(f)
        assert f.max_physical_offset == m.max_physical_offset
        assert db_dump(f) == db_dump(m)
        assert f.query_offset("G", "T", 1) == 17
        # a follower continues the master's queue offsets
        with pytest.raises(OffsetMismatch):
            f.append_raw(pos - 10, m.read_raw(0, 1000))
        bad = bytearray(m.read_raw(0, 1000))
        bad[len(bad) // 2] ^= 0xFF
        g = make(tmp_path / "g")
        try:
            with pytest.raises(CorruptRecord):
                g.append_raw(0, bytes(bad))
            assert g.max_physical_offset == 0
            one = m.read_raw(0, 1000)
            with pytest.raises(CorruptRecord):  # records land elsewhere than their stored offsets
                g.put(Message("T", b"z"))
                g.append_raw(g.max_physical_offset, one)
        finally:
            g.close()
        assert m.read_raw(0, 10) == b""  # the first record is larger: nothing
    finally:
        m.close()
        f.close()


def test_truncation_cuts_log_indexes_and_metadata_durably(tmp_path) -> None:
    s = make(tmp_path / "s")
    s.put_topic_config("T", {"v": 1})
    s.commit_offset("G", "T", 0, 50)
    rs = s.put_batch(msgs(300, queues=1))
    settle(s)
    cut = rs[200].physical_offset
    s.put_topic_config("T", {"v": 2})
    s.put_topic_config("Late", {})
    s.commit_offset("G", "T", 0, 250)
    s.put_batch(msgs(10, queues=1, start=300))
    settle(s)
    before_cut_key = rs[250].msg_id
    s.truncate(cut)
    assert s.max_physical_offset == cut
    assert s.max_offset("T", 0) == 200
    assert s.query_by_msg_id(before_cut_key) is None
    assert s.query_by_key("T", "k250", 5) == []
    assert s.get_topic_config("T") == {"v": 1} and s.get_topic_config("Late") is None
    assert s.query_offset("G", "T", 0) == 50
    r = s.put(Message("T", b"after"))
    assert r.queue_offset == 200 and r.physical_offset == cut
    settle(s)
    s.close()
    s = make(tmp_path / "s")
    try:
        settle(s)
        got = bodies(s, "T", 0)
        assert len(got) == 201 and got[-1] == b"after" and got[199].startswith(b"m000199")
        assert s.get_topic_config("T") == {"v": 1} and s.query_offset("G", "T", 0) == 50
    finally:
        s.close()


def test_truncation_across_segments_and_a_snapshot(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        s.put_topic_config("A", {"v": 1})
        s.append_meta_snapshot()
        rs = s.put_batch(msgs(100, queues=1))
        s.put_topic_config("A", {"v": 2})
        s.put_batch(msgs(800, queues=1, start=100))
        settle(s)
        nseg = len(s.log.segments)
        assert nseg > 2
        s.truncate(rs[50].physical_offset)
        assert len(s.log.segments) == 1 and s.max_offset("T", 0) == 50
        assert s.get_topic_config("A") == {"v": 1}
        assert sorted(os.listdir(tmp_path / "s" / "commitlog")) == ["00000000000000000000"]
    finally:
        s.close()


def test_interrupted_truncation_is_finished_on_open(tmp_path) -> None:
    s = make(tmp_path / "s")
    rs = s.put_batch(msgs(100, queues=1))
    settle(s)
    s.close()
    (tmp_path / "s" / "TRUNCATING").write_text(str(rs[40].physical_offset))
    s = make(tmp_path / "s")
    try:
        assert s.max_physical_offset == rs[40].physical_offset and s.max_offset("T", 0) == 40
        assert not (tmp_path / "s" / "TRUNCATING").exists()
    finally:
        s.close()


def test_expiry_deletes_old_segments_moves_min_and_keeps_metadata(tmp_path) -> None:
    s = make(tmp_path / "s", retention_hours=1.0)
    try:
        s.put_topic_config("T", {"q": 1})
        s.commit_offset("G", "T", 0, 3)
        s.put_batch(msgs(1000, queues=1))
        settle(s)
        assert s.wait_flushed(s.max_physical_offset, 10)
        nseg = len(s.log.segments)
        now = os.stat(s.log.segments[-1].path).st_mtime
        assert s.expire(now=now + 10, disk_usage=(1, 100)) == 0  # young, disk empty
        deleted = s.expire(now=now + 7200, disk_usage=(1, 100))
        assert deleted == nseg - 1  # every old segment, never the active one
        assert len(s.log.segments) == 1
        # the first segment held META records: a snapshot was written after it before it went
        assert ix.unpack_q(s.db.get(ix.LAST_SNAPSHOT)) >= s.min_physical_offset
        mn = s.min_offset("T", 0)
        assert mn > 0
        r = s.get_messages("T", 0, 0)
        assert r.status == GetStatus.OFFSET_MOVED and r.next_offset == mn
        got = s.get_messages("T", 0, mn, 1000)
        assert got.status == GetStatus.FOUND and got.messages[0].queue_offset == mn
        assert s.get_topic_config("T") == {"q": 1} and s.query_offset("G", "T", 0) == 3
        assert s.min_physical_offset > 0
    finally:
        s.close()
    s = make(tmp_path / "s")  # metadata survives the deleted segments through the snapshot
    try:
        assert s.get_topic_config("T") == {"q": 1} and s.min_offset("T", 0) == mn
    finally:
        s.close()
    shutil.rmtree(tmp_path / "s" / "index")
    s = make(tmp_path / "s")  # and a rebuilt index too
    try:
        settle(s)
        assert s.get_topic_config("T") == {"q": 1} and s.query_offset("G", "T", 0) == 3
        assert s.get_messages("T", 0, mn).status == GetStatus.FOUND
    finally:
        s.close()


def test_expiry_by_disk_ratio(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        s.put_batch(msgs(1000, queues=1))
        settle(s)
        assert s.wait_flushed(s.max_physical_offset, 10)
        n = len(s.log.segments)
        seg_disk = os.stat(s.log.segments[0].path).st_blocks * 512
        # 2 segments over the ratio: exactly 2 go (young segments, retention 72h)
        total = 1_000_000
        used = int(0.85 * total) + 2 * seg_disk - 1
        assert s.expire(disk_usage=(used, total)) == 2
        assert len(s.log.segments) == n - 2
    finally:
        s.close()


def test_torn_tail_is_cut_on_open(tmp_path) -> None:
    s = make(tmp_path / "s")
    rs = s.put_batch(msgs(30, queues=1))
    settle(s)
    s.close()
    seg = tmp_path / "s" / "commitlog" / "00000000000000000000"
    last = rs[-1]
    # tear the last record: keep its first half, zero the rest (a write cut by a crash)
    with open(seg, "r+b") as f:
        f.seek(last.physical_offset + last.size // 2)
        f.write(b"\0" * (last.size - last.size // 2))
    s = make(tmp_path / "s")
    try:
        assert s.max_physical_offset == last.physical_offset
        settle(s)
        assert s.max_offset("T", 0) == 29
        r = s.put(Message("T", b"again"))
        assert r.physical_offset == last.physical_offset and r.queue_offset == 29
    finally:
        s.close()


def test_garbage_tail_after_the_last_record_is_cut(tmp_path) -> None:
    s = make(tmp_path / "s")
    rs = s.put_batch(msgs(5, queues=1))
    s.close()
    seg = tmp_path / "s" / "commitlog" / "00000000000000000000"
    with open(seg, "r+b") as f:
        f.seek(rs[-1].end_offset)
        f.write(b"\x07" * 40)
    s = make(tmp_path / "s")
    try:
        assert s.max_physical_offset == rs[-1].end_offset
        with open(seg, "rb") as f:
            f.seek(rs[-1].end_offset)
            assert f.read(40) == b"\0" * 40
    finally:
        s.close()


def test_mid_segment_corruption_is_reported_with_file_and_offset(tmp_path) -> None:
    s = make(tmp_path / "s")
    rs = s.put_batch(msgs(800, queues=1))
    settle(s)
    s.close()
    victim = rs[10]
    seg = tmp_path / "s" / "commitlog" / "00000000000000000000"
    with open(seg, "r+b") as f:
        f.seek(victim.physical_offset + victim.size - 5)
        b = f.read(1)
        f.seek(victim.physical_offset + victim.size - 5)
        f.write(bytes([b[0] ^ 0x55]))
    s = make(tmp_path / "s")  # an older segment: open succeeds
    try:
        with pytest.raises(CorruptRecord) as e:
            s.get_by_physical_offset(victim.physical_offset)
        assert e.value.file == str(seg) and e.value.offset == victim.physical_offset
        assert "crc" in e.value.reason
        with pytest.raises(CorruptRecord):
            s.get_messages("T", 0, 10, 5)
        assert s.get_messages("T", 0, 11, 5).messages[0].queue_offset == 11
        found = s.verify()
        assert [(c.file, c.offset) for c in found] == [(str(seg), victim.physical_offset)]
        # rebuilding indexes skips the corrupt record (its size still leads on) and says so
        s.close()
        shutil.rmtree(tmp_path / "s" / "index")
        s = make(tmp_path / "s")
        settle(s)
        assert s.dispatcher.error is not None and s.dispatcher.error.offset == victim.physical_offset
        assert s.dispatcher.corrupt_skipped == 1
        assert s.max_offset("T", 0) == 800
        r = s.get_messages("T", 0, 9, 3)
        assert [m.queue_offset for m in r.messages] == [9, 11, 12]
    finally:
        s.close()


def test_corruption_in_the_last_segment_with_valid_records_after_refuses_open(tmp_path) -> None:
    s = make(tmp_path / "s")
    rs = s.put_batch(msgs(20, queues=1))
    s.close()
    victim = rs[5]
    seg = tmp_path / "s" / "commitlog" / "00000000000000000000"
    with open(seg, "r+b") as f:
        f.seek(victim.physical_offset + 90)
        f.write(b"\xEE")
    with pytest.raises(CorruptRecord) as e:
        make(tmp_path / "s")
    assert e.value.offset == victim.physical_offset and e.value.file == str(seg)
    assert os.path.getsize(seg) == SEG  # nothing cut


def test_concurrent_writers_from_threads(store) -> None:
    def work(t: int) -> None:
        for i in range(50):
            store.put_batch([Message("T", f"{t}-{i}-{j}".encode(), queue_id=t % 2) for j in range(3)])

    ts = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    settle(store)
    assert store.max_offset("T", 0) + store.max_offset("T", 1) == 900
    got = bodies(store, "T", 0) + bodies(store, "T", 1)
    assert len(set(got)) == 900


def test_dispatch_listener_sees_new_queues(store) -> None:
    seen: list[set] = []
    ev = threading.Event()
    store.add_dispatch_listener(lambda keys: (seen.append(set(keys)), ev.set()))
    store.put(Message("T", b"x", queue_id=3))
    assert ev.wait(5)
    assert ("T", 3) in set().union(*seen)


def test_a_replica_still_reading_holds_expired_segments_until_the_disk_is_full(tmp_path) -> None:
    s = make(tmp_path / "s", retention_hours=1.0)
    try:
        s.put_batch(msgs(1000, queues=1))
        settle(s)
        assert s.wait_flushed(s.max_physical_offset, 10)
        segs = [(seg.base, seg.end) for seg in s.log.segments]
        assert len(segs) >= 3
        now = os.stat(s.log.segments[-1].path).st_mtime + 7200
        reader = segs[1][0] + 1   # a lagging follower holds up to inside the second segment
        s.set_retention_floor(lambda: reader)
        assert s.expire(now=now, disk_usage=(1, 100)) == 1   # only the first segment: it is past it
        assert s.min_physical_offset == segs[1][0]
        assert s.expire(now=now, disk_usage=(99, 100)) >= 1  # over the disk ratio: the disk wins
        s.set_retention_floor(None)
    finally:
        s.close()


def test_reopen_after_a_crash_between_creating_and_sizing_the_next_segment(tmp_path) -> None:
    """The last segment is complete (closed by its blank) and the next file exists but is empty:
    the empty file is removed and appends go on in a fresh segment (they used to fail in reserve)."""
    d = tmp_path / "s"
    s = make(d)
    while len(s.log.segments) < 2:
        s.put_batch(msgs(20, size=2000))
    first_end = s.log.segments[0].end
    s.close()
    seg2 = d / "commitlog" / f"{first_end:020d}"
    os.truncate(seg2, 0)                       # as if killed before the new file was sized
    s = make(d)
    try:
        assert s.log.max_offset == first_end   # everything of the complete segment kept
        settle(s)   # the index (dispatched past the lost segment at the clean close) is rebuilt to the log
        before = bodies(s, "T", 0)
        assert before
        s.put_batch(msgs(10, size=100, start=1000))
        settle(s)
        after = bodies(s, "T", 0)
        assert after[:len(before)] == before and len(after) == len(before) + 5
        assert s.verify() == []
    finally:
        s.close()
