"""A follower's store never writes its own records: its log stays a byte-for-byte prefix of the
master's through expiry (it waits for the master's metadata snapshot), and local writes are refused."""

from __future__ import annotations

import os

import pytest

from orbitmq.broker.store import Message, MessageStore, StoreConfig
from orbitmq.broker.store import index_store as ix
from orbitmq.broker.store.errors import LocalWriteRefused

SEG = 64 * 1024


def make(path, master: bool) -> MessageStore:
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=SEG, expiry_interval_s=0, retention_hours=1.0))
    s.set_write_gate(lambda: master)
    s.open()
    return s


def replicate(m: MessageStore, f: MessageStore) -> None:
    pos = f.max_physical_offset
    while pos < m.max_physical_offset:
        chunk = m.read_raw(pos, 50_000)
        assert chunk
        f.append_raw(pos, chunk)
        pos += len(chunk)


def segment_bytes(s: MessageStore) -> dict[int, bytes]:
    """base -> the bytes of each segment up to the log end."""
    out = {}
    for path, base, end in s.log.segment_files():
        with open(path, "rb") as fh:
            out[base] = fh.read(min(end, s.max_physical_offset) - base)
    return out


def assert_prefix(f: MessageStore, m: MessageStore) -> None:
    fs, ms = segment_bytes(f), segment_bytes(m)
    common = sorted(set(fs) & set(ms))
    assert common, "no segment in common"
    for base in common:
        assert ms[base].startswith(fs[base]), f"follower segment {base} differs from the master's"
    assert f.max_physical_offset <= m.max_physical_offset


def test_follower_expiry_waits_for_the_masters_snapshot_and_never_writes(tmp_path) -> None:
    m = make(tmp_path / "m", master=True)
    f = make(tmp_path / "f", master=False)
    try:
        m.put_topic_config("T", {"q": 1})
        m.commit_offset("G", "T", 0, 5)
        m.put_batch([Message("T", b"x" * 300, queue_id=0) for _ in range(800)])
        replicate(m, f)
        assert f.wait_dispatched(f.max_physical_offset, 10) and f.wait_flushed(f.max_physical_offset, 10)
        end_before = f.max_physical_offset
        later = os.stat(f.log.segments[-1].path).st_mtime + 7200
        # the first segment holds META records and no snapshot covers it: the follower keeps it
        # and appends nothing (before the fix it wrote a snapshot record of its own here)
        assert f.expire(now=later, disk_usage=(1, 100)) == 0
        assert f.max_physical_offset == end_before and len(f.log.segments) > 2
        assert_prefix(f, m)
        # every local write path refuses on the follower
        for write in (lambda: f.put(Message("T", b"y", queue_id=0)), lambda: f.put_topic_config("U", {}),
                      lambda: f.commit_offset("G", "T", 0, 9), f.append_meta_snapshot,
                      lambda: f.put_subscription_group("H", {}), lambda: f.delete_topic("T")):
            with pytest.raises(LocalWriteRefused):
                write()
        assert f.max_physical_offset == end_before
        # and a master never takes replicated bytes
        with pytest.raises(LocalWriteRefused):
            m.append_raw(m.max_physical_offset, f.read_raw(0, 1000))
        # the master expires: it writes a snapshot first, which replicates; then the follower expires too
        assert m.wait_dispatched(m.max_physical_offset, 10) and m.wait_flushed(m.max_physical_offset, 10)
        assert m.expire(now=later, disk_usage=(1, 100)) >= 1
        snap = ix.unpack_q(m.db.get(ix.LAST_SNAPSHOT))
        replicate(m, f)
        assert f.wait_dispatched(f.max_physical_offset, 10) and f.wait_flushed(f.max_physical_offset, 10)
        assert ix.unpack_q(f.db.get(ix.LAST_SNAPSHOT)) == snap
        assert f.expire(now=later, disk_usage=(1, 100)) >= 1
        assert f.min_physical_offset == m.min_physical_offset
        assert f.max_physical_offset == m.max_physical_offset
        assert_prefix(f, m)
        assert f.get_topic_config("T") == {"q": 1} and f.query_offset("G", "T", 0) == 5
        # more data keeps flowing after the expiry
        m.put_batch([Message("T", b"z" * 300, queue_id=0) for _ in range(300)])
        replicate(m, f)
        assert f.read_raw(f.min_physical_offset, 1 << 20) == m.read_raw(m.min_physical_offset, 1 << 20)
    finally:
        m.close()
        f.close()


def test_gate_flip_follows_the_role(tmp_path) -> None:
    role = {"master": False}
    s = MessageStore(StoreConfig(store_dir=str(tmp_path / "s"), segment_size=SEG, expiry_interval_s=0))
    s.set_write_gate(lambda: role["master"])
    s.open()
    try:
        with pytest.raises(LocalWriteRefused):
            s.put(Message("T", b"a"))
        role["master"] = True
        assert s.put(Message("T", b"a")).queue_offset == 0
        role["master"] = False
        with pytest.raises(LocalWriteRefused):
            s.put_topic_config("T", {})
        assert s.may_write_locally() is False
    finally:
        s.close()


def test_unconfirmed_expiry_snapshot_is_not_written_again(tmp_path) -> None:
    """A master whose confirm offset does not move (followers gone) writes one snapshot for the
    segment it wants to expire, not one per expiry pass."""
    s = MessageStore(StoreConfig(store_dir=str(tmp_path / "m"), segment_size=SEG, expiry_interval_s=0,
                                 retention_hours=1.0, auto_confirm=False, meta_wait_s=0.2))
    s.set_write_gate(lambda: True)
    s.open()
    try:
        s.put_topic_config("T", {"q": 1})
        s.put_batch([Message("T", b"x" * 300, queue_id=0) for _ in range(600)])
        s.set_confirm_offset(s.max_physical_offset)
        assert s.wait_dispatched(s.max_physical_offset, 10) and s.wait_flushed(s.max_physical_offset, 10)
        later = os.stat(s.log.segments[-1].path).st_mtime + 7200
        end = s.max_physical_offset
        for _ in range(3):
            assert s.expire(now=later, disk_usage=(1, 100)) == 0  # the snapshot is not confirmed
        grown = s.max_physical_offset - end
        assert 0 < grown < 1000, f"expiry wrote {grown} bytes: more than one snapshot"
        s.set_confirm_offset(s.max_physical_offset)  # confirmed now: the segments go
        assert s.wait_dispatched(s.max_physical_offset, 10)
        assert s.expire(now=later, disk_usage=(1, 100)) >= 1 and s.max_physical_offset == end + grown
    finally:
        s.close()
