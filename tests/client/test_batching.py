"""Batch accumulator: ready on count, bytes or linger; nothing lost or duplicated."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbitmq.client.batching import BatchAccumulator


def test_full_by_count():
    acc = BatchAccumulator(max_messages=3, max_bytes=10_000, linger_s=1.0)
    assert acc.add("q", 1, 10, 0.0) == []
    assert acc.add("q", 2, 10, 0.0) == []
    (b,) = acc.add("q", 3, 10, 0.0)
    assert b.items == [1, 2, 3] and b.size == 30 and acc.pending() == 0


def test_bytes_limit_starts_a_new_batch_before_overflowing():
    acc = BatchAccumulator(max_messages=100, max_bytes=100, linger_s=1.0)
    acc.add("q", "a", 60, 0.0)
    (b,) = acc.add("q", "b", 60, 0.0)
    assert b.items == ["a"]
    assert acc.pending() == 1


def test_single_item_larger_than_max_bytes_goes_alone():
    acc = BatchAccumulator(max_messages=100, max_bytes=100, linger_s=1.0)
    (b,) = acc.add("q", "big", 500, 0.0)
    assert b.items == ["big"]


def test_linger_and_deadline():
    acc = BatchAccumulator(max_messages=100, max_bytes=10_000, linger_s=0.005)
    assert acc.next_deadline() is None
    acc.add("q1", 1, 1, 10.0)
    acc.add("q2", 2, 1, 10.003)
    assert acc.next_deadline() == pytest.approx(10.005)
    assert acc.due(10.004) == []
    (b,) = acc.due(10.005)
    assert b.key == "q1"
    assert [x.key for x in acc.due(10.009)] == ["q2"]


def test_bad_limits_rejected():
    with pytest.raises(ValueError):
        BatchAccumulator(max_messages=0)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 300), st.floats(0, 0.01)), max_size=200),
       st.integers(1, 10), st.integers(50, 1000))
def test_every_item_comes_out_once_in_order_per_key(ops, max_n, max_b):
    acc = BatchAccumulator(max_messages=max_n, max_bytes=max_b, linger_s=0.004)
    now = 0.0
    out = []
    for i, (key, size, dt) in enumerate(ops):
        now += dt
        for b in acc.add(key, (key, i), size, now) + acc.due(now):
            assert len(b.items) <= max_n
            assert b.size <= max_b or len(b.items) == 1
            out.extend(b.items)
    for b in acc.drain():
        out.extend(b.items)
    assert sorted(out, key=lambda x: x[1]) == [(k, i) for i, (k, _, _) in enumerate(ops)]
    for key in "abc":
        seq = [i for k, i in out if k == key]
        assert seq == sorted(seq)
