"""The clean-shutdown checkpoint on a real store (real files, fsync, rocksdict): a clean close lets
the next open skip the scan of the last segment; a crash, a stale, a mismatched or a corrupt
checkpoint falls back to the scan, and nothing is lost or resurrected either way."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbitmq.broker.store import GetStatus, Message, MessageStore, StoreConfig
from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store import checkpoint as ck
from orbitmq.broker.store import checkpoint_file as ckf
from orbitmq.broker.store.commitlog import CommitLog
from orbitmq.broker.store.errors import LocalWriteRefused, StoreClosed
from tests.broker.test_store_follower import replicate

SEG = 64 * 1024
B = "BatchT"


def make(path, **kw) -> MessageStore:
    kw.setdefault("expiry_interval_s", 0)
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=SEG, **kw))
    s.open()
    return s


def fill(s: MessageStore, n: int = 400, start: int = 0) -> None:
    """Messages (keys, tags, ids), batch records and META records spread over several segments."""
    if start == 0:
        s.put_topic_config("T", {"read_queues": 2, "write_queues": 2, "perm": 6})
        s.put_topic_config(B, {"read_queues": 1, "write_queues": 1, "perm": 6})
    for i in range(start, start + n, 20):
        s.put_batch([Message("T", f"m{j:05d}".encode() + b"x" * 150, queue_id=j % 2, keys=[f"k{j}"],
                             tags="odd" if j % 2 else "even", msg_id=f"ID{j:08d}") for j in range(i, i + 20)])
        bodies = [f"b{i}-{j}".encode().ljust(120, b".") for j in range(5)]
        s.put_batch_record(br.encode(B, bodies, id_prefix="CAFE", id_first=i, born_ts=1, born_host="h:1",
                                     keys=[[f"bk{i}-{j}"] for j in range(5)]), 0)
        s.commit_offset("G", "T", 0, i // 2)


def content(s: MessageStore) -> dict[tuple[str, int], list[tuple[int, bytes]]]:
    """Every queue's (queue offset, body) pairs, read through the consume queues."""
    assert s.wait_dispatched(s.confirm_offset, 30)
    out = {}
    for topic, q in sorted(s.queues()):
        got, off = [], s.min_offset(topic, q)
        while True:
            r = s.get_messages(topic, q, off, 64, 1 << 24)
            if r.status != GetStatus.FOUND:
                break
            got += [(m.queue_offset, m.body) for m in r.messages]
            off = r.next_offset
        out[(topic, q)] = got
    return out


def queries(s: MessageStore, ids: list[int]) -> list:
    out = []
    for j in ids:
        m = s.query_by_msg_id(f"ID{j:08d}")
        out.append((j, m and m.body, [x.body for x in s.query_by_key("T", f"k{j}")]))
    return out


def cp_path(d) -> str:
    return ckf.path_in(str(d))


@pytest.fixture
def scans(monkeypatch) -> list[str]:
    """Paths of the segments CommitLog scanned for the end of data (a spy on the real method)."""
    seen: list[str] = []
    real = CommitLog._recover_segment

    def spy(self, seg, cut=True):
        seen.append(seg.path)
        return real(self, seg, cut)

    monkeypatch.setattr(CommitLog, "_recover_segment", spy)
    return seen


def test_clean_close_then_reopen_skips_the_scan_and_finds_everything(tmp_path, scans) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s)
    assert len(s.log.segments) >= 3
    before, end, nseg = content(s), s.max_physical_offset, len(s.log.segments)
    q_before = queries(s, [0, 7, 199, 399])
    s.close()
    assert s.checkpoint_written and os.path.exists(cp_path(d))
    cp = ck.decode(open(cp_path(d), "rb").read())
    assert (cp.log_end, cp.dispatched, cp.segments) == (end, end, nseg)
    scans.clear()
    s = make(d)
    try:
        assert not os.path.exists(cp_path(d)), "the checkpoint must be gone before the first write"
        assert s.recovery["path"] == "checkpoint" and s.stats()["recovery"] == "checkpoint"
        assert scans == []   # no segment was scanned
        assert s.max_physical_offset == end
        assert content(s) == before
        assert queries(s, [0, 7, 199, 399]) == q_before and all(q[1] for q in q_before)
        assert s.get_topic_config(B) == {"read_queues": 1, "write_queues": 1, "perm": 6}
        assert s.query_offset("G", "T", 0) == 380 // 2
        # appends go on exactly where the log ended, queue offsets continue (messages and batches)
        r = s.put(Message("T", b"after", queue_id=1))
        rb, _ = s.put_batch_record(br.encode(B, [b"after-batch"], id_prefix="BEEF", id_first=0, born_ts=1), 0)
        assert r.physical_offset == end and r.queue_offset == len(before[("T", 1)])
        assert rb.base_queue_offset == len(before[(B, 0)])
        s.close()
        s = make(d)
        assert s.recovery["path"] == "checkpoint"
        after = content(s)
        assert after[("T", 1)][-1] == (r.queue_offset, b"after") and after[(B, 0)][-1][1] == b"after-batch"
    finally:
        s.close()


def test_a_store_without_a_checkpoint_scans_and_says_why(tmp_path, scans, caplog) -> None:
    d = tmp_path / "s"
    s = make(d)
    assert s.recovery["path"] == "new"
    fill(s, 100)
    before = content(s)
    s.close()
    os.unlink(cp_path(d))   # as after a run that never closed
    scans.clear()
    with caplog.at_level(logging.INFO, logger="orbitmq.broker.store"):
        s = make(d)
    try:
        assert s.recovery["path"] == "scan" and s.recovery["reason"] == "missing"
        assert scans and scans[0] == s.log.segments[-1].path
        assert "no clean-shutdown checkpoint" in caplog.text
        assert content(s) == before
    finally:
        s.close()


WRITER = textwrap.dedent("""
    import sys, time
    from orbitmq.broker.store import Message, MessageStore, StoreConfig
    s = MessageStore(StoreConfig(store_dir=sys.argv[1], segment_size=int(sys.argv[2]), expiry_interval_s=0,
                                 flush_interval_s=0.01))
    s.open()
    print("RECOVERY", s.recovery["path"], flush=True)
    rs = []
    for i in range(300):
        rs += s.put_batch([Message("T", b"new-%05d" % i + b"y" * 300, queue_id=i % 2, keys=["n%d" % i])])
    assert s.wait_flushed(rs[-1].end_offset, 60)
    print("FLUSHED", rs[-1].end_offset, flush=True)
    time.sleep(600)
""")


@pytest.mark.process
def test_killed_after_starting_from_a_checkpoint_the_next_start_scans_and_keeps_every_append(tmp_path) -> None:
    """The stale-checkpoint hazard: a store opened from a checkpoint, appended to and SIGKILLed
    must not find that checkpoint again (open removed it before the first append)."""
    d = tmp_path / "s"
    s = make(d)
    fill(s, 200)
    before = content(s)
    s.close()
    assert os.path.exists(cp_path(d))
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(d), str(SEG)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline().split() == ["RECOVERY", "checkpoint"]
        line = p.stdout.readline().split()   # blocks until the child flushed all 300 (or died)
        assert line[0] == "FLUSHED", line
        flushed_end = int(line[1])
        assert not os.path.exists(cp_path(d))
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    s = make(d)
    try:
        assert s.recovery["path"] == "scan"
        assert s.max_physical_offset == flushed_end
        after = content(s)
        for q in (0, 1):
            old = before[("T", q)]
            assert after[("T", q)][:len(old)] == old
            new = [b for _, b in after[("T", q)][len(old):]]
            assert new == [b"new-%05d" % i + b"y" * 300 for i in range(q, 300, 2)]
        assert after[(B, 0)] == before[(B, 0)]
        assert [m.body[:9] for m in s.query_by_key("T", "n299")] == [b"new-00299"]
    finally:
        s.close()


def _restore(d, old_cp: bytes) -> None:
    """Put back an older checkpoint and the last segment's mtime it recorded (as if the clock were
    too coarse to show the change): only the content checks can refuse it then."""
    cp = ck.decode(old_cp)
    with open(cp_path(d), "wb") as f:
        f.write(old_cp)
    last = os.path.join(str(d), "commitlog", f"{cp.last_base:020d}")
    if os.path.exists(last):
        os.utime(last, ns=(cp.last_mtime_ns, cp.last_mtime_ns))


def test_a_stale_checkpoint_after_appends_by_another_opener_is_refused(tmp_path, caplog) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 100)
    s.close()
    old = open(cp_path(d), "rb").read()
    s = make(d)
    s.put_batch([Message("T", b"later-%d" % i, queue_id=0) for i in range(5)])
    want, end = content(s), s.max_physical_offset
    s.close()
    _restore(d, old)   # an opener that did not know about checkpoints left the old one behind
    with caplog.at_level(logging.WARNING, logger="orbitmq.broker.store"):
        s = make(d)
    try:
        assert s.recovery["path"] == "scan" and "written after the recorded end" in s.recovery["reason"]
        assert "not used" in caplog.text
        assert s.max_physical_offset == end and content(s) == want
    finally:
        s.close()


def test_a_stale_checkpoint_after_a_truncation_is_refused_and_nothing_comes_back(tmp_path) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 100)
    cut = s.put_batch([Message("T", b"doomed-%d" % i, queue_id=0) for i in range(3)])[0].physical_offset
    s.close()
    old = open(cp_path(d), "rb").read()   # its end is after the doomed messages
    s = make(d)
    s.truncate(cut)   # a follower cutting its divergent tail on failover
    want = content(s)
    s.close()
    _restore(d, old)
    s = make(d)
    try:
        assert s.recovery["path"] == "scan" and "differ" in s.recovery["reason"]
        assert s.max_physical_offset == cut and content(s) == want
        assert all(not b.startswith(b"doomed") for q in want.values() for _, b in q)
    finally:
        s.close()


def test_a_rewritten_tail_of_the_same_length_is_refused(tmp_path) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 40)
    r = s.put(Message("T", b"A" * 500, queue_id=0, msg_id="SAME"))
    s.close()
    old = open(cp_path(d), "rb").read()
    assert ck.decode(old).log_end == r.end_offset
    s = make(d)
    s.truncate(r.physical_offset)
    r2 = s.put(Message("T", b"B" * 500, queue_id=0, msg_id="SAME"))
    assert r2.end_offset == r.end_offset   # the very same end, other bytes before it
    want = content(s)
    s.close()
    assert ck.decode(open(cp_path(d), "rb").read()).dispatched == ck.decode(old).dispatched
    _restore(d, old)
    s = make(d)
    try:
        assert s.recovery["path"] == "scan" and "differ" in s.recovery["reason"]
        assert content(s) == want and want[("T", 0)][-1][1] == b"B" * 500
    finally:
        s.close()


def test_a_stale_checkpoint_after_a_truncation_into_an_older_segment_is_refused(tmp_path) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 400)
    assert len(s.log.segments) >= 3
    first_seg_end = s.log.segments[0].end
    s.close()
    old = open(cp_path(d), "rb").read()
    s = make(d)
    cut = next(off for off, _m, _b in s.log.records(s.log.segments[1].base) if off > s.log.segments[1].base)
    s.truncate(cut)
    want, end = content(s), s.max_physical_offset
    assert end == cut and end > first_seg_end
    s.close()
    _restore(d, old)
    s = make(d)
    try:
        assert s.recovery["path"] == "scan" and "segment" in s.recovery["reason"]
        assert s.max_physical_offset == end and content(s) == want
    finally:
        s.close()


def test_a_stale_checkpoint_after_expiry_is_refused(tmp_path) -> None:
    d = tmp_path / "s"
    s = make(d, retention_hours=1.0)
    fill(s, 300)
    s.close()
    old = open(cp_path(d), "rb").read()
    s = make(d, retention_hours=1.0)
    now = os.stat(s.log.segments[-1].path).st_mtime + 7200
    assert s.expire(now=now, disk_usage=(1, 100)) >= 1
    want, low = content(s), s.min_physical_offset
    s.close()
    _restore(d, old)
    s = make(d, retention_hours=1.0)
    try:
        assert s.recovery["path"] == "scan" and "oldest segment" in s.recovery["reason"]
        assert s.min_physical_offset == low and content(s) == want
    finally:
        s.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage", "other-version"])
def test_a_corrupt_checkpoint_falls_back_to_the_scan(tmp_path, caplog, damage: str) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 60)
    before = content(s)
    s.close()
    raw = bytearray(open(cp_path(d), "rb").read())
    if damage == "flip":
        raw[len(raw) // 3] ^= 0x20
    elif damage == "truncate":
        raw = raw[:len(raw) // 2]
    elif damage == "empty":
        raw = bytearray()
    elif damage == "garbage":
        raw = bytearray(os.urandom(200))
    else:
        raw = bytearray(raw.replace(b'"version":1', b'"version":9'))
    with open(cp_path(d), "wb") as f:
        f.write(raw)
    with caplog.at_level(logging.WARNING, logger="orbitmq.broker.store"):
        s = make(d)
    try:
        assert s.recovery["path"] == "scan" and s.recovery["reason"].startswith("corrupt")
        assert "clean-shutdown checkpoint" in caplog.text and "not used" in caplog.text
        assert not os.path.exists(cp_path(d))
        assert content(s) == before
    finally:
        s.close()


def test_a_rebuilt_index_refuses_the_checkpoint(tmp_path) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 100)
    before = content(s)
    s.close()
    shutil.rmtree(d / "index")
    s = make(d)
    try:
        assert s.recovery["path"] == "scan" and "index" in s.recovery["reason"]
        assert content(s) == before
    finally:
        s.close()


def test_a_pending_truncation_marker_refuses_the_checkpoint_and_is_finished(tmp_path) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 100)
    cut = s.put(Message("T", b"to-be-cut", queue_id=0)).physical_offset
    s.put(Message("T", b"also-cut", queue_id=1))
    s.close()
    with open(d / "TRUNCATING", "w") as f:
        f.write(str(cut))
    s = make(d)
    try:
        assert s.recovery["path"] == "scan" and "TRUNCATING" in s.recovery["reason"]
        assert s.max_physical_offset == cut and not os.path.exists(d / "TRUNCATING")
        assert all(b not in (b"to-be-cut", b"also-cut") for q in content(s).values() for _, b in q)
    finally:
        s.close()


def test_a_follower_with_an_unconfirmed_tail_restarts_from_the_checkpoint(tmp_path) -> None:
    """A follower's dispatch stops at the confirm offset; the undispatched tail (messages, batch
    and META records) is in the checkpoint's log end, and its queue ends are rebuilt from it."""
    m = make(tmp_path / "m")
    m.set_write_gate(lambda: True)

    def follower() -> MessageStore:
        f = MessageStore(StoreConfig(store_dir=str(tmp_path / "f"), segment_size=SEG, expiry_interval_s=0,
                                     auto_confirm=False))
        f.set_write_gate(lambda: False)
        f.open()
        return f

    f = follower()
    try:
        fill(m, 200)
        replicate(m, f)
        confirmed = next(off for off, _m, _b in f.log.records(f.log.segments[-1].base))
        f.set_confirm_offset(confirmed)
        assert f.wait_dispatched(confirmed, 20)
        with pytest.raises(LocalWriteRefused):
            f.put(Message("T", b"local"))
        f.close()
        cp = ck.decode(open(cp_path(tmp_path / "f"), "rb").read())
        assert cp.dispatched == confirmed < cp.log_end == m.max_physical_offset
        f = follower()
        assert f.recovery["path"] == "checkpoint" and f.recovery["tail_bytes"] == cp.log_end - confirmed
        assert f._next == m._next   # queue ends include the unconfirmed tail (messages and batches)
        fill(m, 100, start=200)
        replicate(m, f)
        f.set_confirm_offset(m.max_physical_offset)
        assert content(f) == content(m)
        with open(m.log.segments[-1].path, "rb") as a, open(f.log.segments[-1].path, "rb") as b:
            n = m.max_physical_offset - m.log.segments[-1].base
            assert a.read(n) == b.read(n)
    finally:
        f.close()
        m.close()


def test_an_empty_last_segment_restarts_from_the_checkpoint_and_its_tail_is_the_previous_one(tmp_path) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 300)
    last = s.log.segments[-1].base
    s.truncate(last)   # the last segment stays, empty; the previous one ends with its blank
    want = content(s)
    s.close()
    cp = ck.decode(open(cp_path(d), "rb").read())
    assert cp.log_end == cp.last_base == last and cp.segments >= 2
    assert cp.tail_len == min(ck.TAIL_BYTES, last - cp.first_base) > 0   # the previous segment's tail
    s = make(d)
    try:
        assert s.recovery["path"] == "checkpoint" and s.max_physical_offset == last
        assert content(s) == want
        assert s.put(Message("T", b"first-of-the-segment", queue_id=0)).physical_offset == last
    finally:
        s.close()
    # empty again, then the previous segment's tail changed while the broker was down (the
    # last segment's mtime kept): the tail CRC reaches into the previous segment and refuses it
    s = make(d)
    s.truncate(last)
    s.close()
    segs = sorted(os.listdir(d / "commitlog"))
    prev = os.path.join(str(d), "commitlog", segs[-2])
    with open(prev, "r+b") as f:   # damage the blank that closes the previous segment
        f.seek(SEG - 4)
        f.write(b"\x01")
    _restore(d, open(cp_path(d), "rb").read())
    s = make(d)
    try:
        assert s.recovery["path"] == "scan" and "differ" in s.recovery["reason"]
    finally:
        s.close()


def test_a_closed_store_refuses_every_write_and_its_checkpoint_stays_true(tmp_path) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 40)
    end = s.max_physical_offset
    s.close()
    for write in (lambda: s.put(Message("T", b"late")), lambda: s.commit_offset("G", "T", 0, 1),
                  lambda: s.append_raw(end, b""), lambda: s.truncate(0), lambda: s.start_log_at(0)):
        with pytest.raises(StoreClosed):
            write()
    s = make(d)
    try:
        assert s.recovery["path"] == "checkpoint" and s.max_physical_offset == end
    finally:
        s.close()


def _state(s: MessageStore) -> tuple:
    return (s.min_physical_offset, s.max_physical_offset, dict(s._next), content(s),
            s.list_topics(), s.offsets_of_group("G"))


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.sampled_from(["put", "batch", "meta", "truncate", "reopen", "expire", "rollover"]),
                    min_size=1, max_size=8), seed=st.integers(0, 1 << 30))
def test_the_checkpoint_path_finds_what_the_scan_finds(tmp_path_factory, ops: list[str], seed: int) -> None:
    """Any mix of writes, truncations, expiry and clean restarts: opening from the checkpoint gives
    the same log, queues, metadata and offsets as opening the same files by a scan."""
    import random

    rnd = random.Random(seed)
    root = tmp_path_factory.mktemp("eq")
    d = root / "s"
    s = make(d, retention_hours=1.0)
    try:
        fill(s, 60)
        for i, op in enumerate(ops):
            if op == "put":
                s.put_batch([Message("T", b"p%d-%d" % (i, j) * rnd.randint(1, 40), queue_id=j % 2)
                             for j in range(rnd.randint(1, 30))])
            elif op == "batch":
                s.put_batch_record(br.encode(B, [b"q%d-%d" % (i, j) for j in range(rnd.randint(1, 9))],
                                             id_prefix="F00D", id_first=i * 100, born_ts=1), 0)
            elif op == "meta":
                s.commit_offset("G", "T", rnd.randint(0, 1), rnd.randint(0, 50))
                s.put_topic_config(f"X{i}", {"read_queues": 1, "write_queues": 1, "perm": 6})
            elif op == "truncate":
                offs = [off for off, _m, _b in s.log.records(s.log.segments[-1].base)]
                if offs:
                    s.truncate(rnd.choice(offs))
            elif op == "reopen":
                s.close()
                s = make(d, retention_hours=1.0)
                assert s.recovery["path"] == "checkpoint"
            elif op == "expire":
                assert s.wait_flushed(s.max_physical_offset, 30) and s.wait_dispatched(s.max_physical_offset, 30)
                s.expire(now=os.stat(s.log.segments[-1].path).st_mtime + 7200, disk_usage=(1, 100))
            elif op == "rollover":
                s.truncate(s.log.segments[-1].base)
        s.close()
        shutil.copytree(d, root / "scan")
        os.unlink(cp_path(root / "scan"))
        a = make(d, retention_hours=1.0)
        b = make(root / "scan", retention_hours=1.0)
        try:
            assert (a.recovery["path"], b.recovery["path"]) == ("checkpoint", "scan")
            assert _state(a) == _state(b)
        finally:
            a.close()
            b.close()
    finally:
        s.close()
        shutil.rmtree(root, ignore_errors=True)


def test_a_checkpoint_without_its_segments_is_refused_and_the_store_starts_empty(tmp_path, caplog) -> None:
    d = tmp_path / "s"
    s = make(d)
    fill(s, 40)
    s.close()
    shutil.rmtree(d / "commitlog")
    with caplog.at_level(logging.WARNING, logger="orbitmq.broker.store"):
        s = make(d)
    try:
        assert s.recovery["path"] == "new" and "segment files" in s.recovery["reason"]
        assert "not used" in caplog.text and s.max_physical_offset == 0
    finally:
        s.close()
