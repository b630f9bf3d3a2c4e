"""The consume queue tail cache (broker/store/cq_tail.py): the pure core against a plain model
(hypothesis), and a real store whose reads after truncation, topic deletion and expiry give what
the index alone gives."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.broker.store import GetStatus, Message
from orbitmq.broker.store.cq_tail import CqTail
from tests.broker.test_store import make, msgs, settle

KEYS = [("A", 0), ("A", 1), ("B", 0)]

# an operation: ("add", [(key index, count, gap)]) | ("clear",) | ("drop", topic) | ("read", key index, offset)
_op = st.one_of(
    st.tuples(st.just("add"), st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4), st.booleans()),
                                         min_size=1, max_size=6)),
    st.tuples(st.just("clear")),
    st.tuples(st.just("drop"), st.sampled_from(["A", "B"])),
    st.tuples(st.just("read"), st.integers(0, 2), st.integers(0, 80)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=40), st.integers(1, 6))
def test_reads_match_a_model_of_the_contiguous_tail(ops, per_queue):
    tail = CqTail(per_queue=per_queue)
    model: dict[tuple[str, int], list[tuple]] = {}     # everything added since the queue's last reset
    nxt = {k: 0 for k in KEYS}
    phys = 0
    for op in ops:
        if op[0] == "add":
            fresh = []
            for ki, cnt, gap in op[1]:
                key = KEYS[ki]
                base = nxt[key] + (3 if gap else 0)          # a gap: the tail must start over
                e = (base, phys, 10, 7, cnt, cnt > 1)
                phys += 10
                nxt[key] = base + cnt
                lst = model.setdefault(key, [])
                if lst and lst[-1][0] + lst[-1][4] != base:
                    lst.clear()
                lst.append(e)
                fresh.append((key, e))
            tail.add(fresh)
        elif op[0] == "clear":
            tail.clear()
            model.clear()
        elif op[0] == "drop":
            tail.drop_topic(op[1])
            for k in [k for k in model if k[0] == op[1]]:
                del model[k]
        else:
            key, off = KEYS[op[1]], op[2]
            entries = model.get(key, [])
            got = tail.read(key, off)
            holder = [i for i, e in enumerate(entries) if e[0] <= off < e[0] + e[4]]
            if got is not None:                               # a hit is the model's run from that entry
                assert holder and got == entries[holder[0]:]
            if holder and holder[0] >= len(entries) - per_queue:
                assert got is not None                        # the last per_queue entries always hit


def test_the_queue_bound_starts_over():
    tail = CqTail(per_queue=2, max_queues=2)
    tail.add([(("T", 0), (0, 0, 1, 0, 1, False)), (("T", 1), (0, 1, 1, 0, 1, False))])
    assert len(tail) == 2
    tail.add([(("T", 2), (0, 2, 1, 0, 1, False))])
    assert len(tail) == 1 and tail.read(("T", 0), 0) is None and tail.read(("T", 2), 0) is not None
    for i in range(1, 10):                                   # a tail is trimmed, never above 2 x per_queue
        tail.add([(("T", 2), (i, 2 + i, 1, 0, 1, False))])
        assert len(tail._q[("T", 2)]) <= 4 and tail.read(("T", 2), i) == [(i, 2 + i, 1, 0, 1, False)]


def _hits_and_bodies(s, topic, q, start):
    h = s.dispatcher.cq_tail.hits
    r = s.get_messages(topic, q, start, 64)
    return s.dispatcher.cq_tail.hits - h, r.status, [m.body[:7] for m in r.messages]


def test_a_store_reads_the_tail_from_the_cache_and_the_same_after_truncation(tmp_path):
    s = make(tmp_path / "s")
    try:
        s.put_topic_config("T", {})
        rs = s.put_batch(msgs(20, queues=1))
        settle(s)
        hits, status, got = _hits_and_bodies(s, "T", 0, 15)
        assert hits == 1 and status == GetStatus.FOUND and got == [f"m{i:06d}".encode()[:7] for i in range(15, 20)]
        s.truncate(rs[10].physical_offset)
        assert _hits_and_bodies(s, "T", 0, 15)[1] == GetStatus.OFFSET_TOO_BIG
        assert _hits_and_bodies(s, "T", 0, 8)[2] == [b"m000008", b"m000009"]
        s.put_batch([Message("T", f"n{i:06d}".encode()) for i in range(10, 14)])
        settle(s)
        hits, status, got = _hits_and_bodies(s, "T", 0, 10)
        assert hits == 1 and got == [f"n{i:06d}".encode() for i in range(10, 14)]
    finally:
        s.close()


def test_a_deleted_and_recreated_topic_reads_its_new_messages(tmp_path):
    s = make(tmp_path / "s")
    try:
        s.put_topic_config("T", {})
        s.put_batch(msgs(6, queues=1))
        settle(s)
        assert _hits_and_bodies(s, "T", 0, 0)[0] == 1
        s.delete_topic("T")
        settle(s)
        s.put_topic_config("T", {})
        s.put_batch([Message("T", b"new0000"), Message("T", b"new0001")])
        settle(s)
        assert _hits_and_bodies(s, "T", 0, 0)[1:] == (GetStatus.FOUND, [b"new0000", b"new0001"])
    finally:
        s.close()


def test_after_expiry_reads_match_the_index(tmp_path):
    s = make(tmp_path / "s", retention_hours=1.0)
    try:
        s.put_topic_config("T", {})
        s.put_batch(msgs(1000, queues=1))
        settle(s)
        assert s.wait_flushed(s.max_physical_offset, 10)
        now = os.stat(s.log.segments[-1].path).st_mtime
        assert s.expire(now=now + 7200, disk_usage=(1, 100)) > 0
        mn = s.min_offset("T", 0)
        first = [s.get_messages("T", 0, o, 5) for o in (0, mn, 990)]
        s.dispatcher.cq_tail.clear()
        again = [s.get_messages("T", 0, o, 5) for o in (0, mn, 990)]
        assert [(r.status, r.next_offset, [m.body for m in r.messages]) for r in first] == \
            [(r.status, r.next_offset, [m.body for m in r.messages]) for r in again]
        s.put_batch(msgs(5, queues=1, start=1000))
        settle(s)
        assert _hits_and_bodies(s, "T", 0, 1000)[0] == 1
    finally:
        s.close()
