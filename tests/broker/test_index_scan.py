"""`IndexStore.scan_from_floor` (one iterator: the last key <= a key, then on) against a plain model,
and the consume queue read built on it starting at, inside and after batch entries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.broker.store import Message, MessageStore, StoreConfig
from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store import index_store as ix


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    store = ix.IndexStore(str(tmp_path_factory.mktemp("ix") / "index"))
    yield store
    store.close()


def _model(keys: set[bytes], prefix: bytes, key: bytes) -> list[bytes]:
    mine = sorted(k for k in keys if k.startswith(prefix))
    floor = [k for k in mine if k <= key]
    return [k for k in mine if k >= floor[-1]] if floor else [k for k in mine if k > key]


@settings(max_examples=150, deadline=None)
@given(entries=st.sets(st.tuples(st.sampled_from([b"a", b"c\x00", b"c\x01", b"d"]), st.integers(0, 40)), max_size=40),
       prefix=st.sampled_from([b"c\x00", b"c\x01"]), at=st.integers(0, 41))
def test_scan_from_floor_matches_the_model(db, entries, prefix, at):
    for k, _ in list(db.scan(b"")):
        db.db.delete(k)
    keys = {p + n.to_bytes(8, "big") for p, n in entries}
    for k in keys:
        db.db[k] = b"v"
    key = prefix + at.to_bytes(8, "big")
    assert [k for k, _ in db.scan_from_floor(prefix, key)] == _model(keys, prefix, key)


def test_consume_queue_reads_start_at_inside_and_after_batch_entries(tmp_path):
    s = MessageStore(StoreConfig(store_dir=str(tmp_path / "s"), expiry_interval_s=0))
    s.open()
    try:
        # queue 0: singles 0-2, a batch record of 5 (3-7), a single (8); queue 1 interleaved
        for i in range(3):
            s.put_batch([Message(topic="T", queue_id=0, body=f"s{i}".encode())])
            s.put_batch([Message(topic="T", queue_id=1, body=b"other")])
        s.put_topic_config("T", {"read_queues": 2, "write_queues": 2, "perm": 6})
        s.put_batch_record(br.encode("T", [f"b{j}".encode() for j in range(5)], born_ts=1, born_host="h:1",
                                      id_prefix="AB12", id_first=0), 0)
        s.put_batch([Message(topic="T", queue_id=0, body=b"s8")])
        s.wait_dispatched(s.log.max_offset, 10)
        tail = s.dispatcher.cq_tail
        for source in ("tail cache", "index"):     # the same answers from the cache and from the index
            hits = tail.hits
            for start in range(10):
                got = [m.queue_offset for m in s.get_messages("T", 0, start, 32).messages]
                assert got == list(range(start, 9)), (source, start)
                entries = [(e[0], e[4]) for e in s._cq_from("T", 0, start, 9)]   # (base offset, count)
                # the first entry is the one holding `start` (the batch's base when inside it)
                want = [(0, 1), (1, 1), (2, 1), (3, 5), (8, 1)]
                assert entries == [e for e in want if e[0] + e[1] > start], (source, start)
            assert [m.queue_offset for m in s.get_messages("T", 1, 1, 32).messages] == [1, 2]
            assert (tail.hits > hits) == (source == "tail cache")
            tail.clear()
    finally:
        s.close()
