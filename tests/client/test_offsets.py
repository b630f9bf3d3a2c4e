"""Offset tracking: the committable offset never passes an unacknowledged message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbitmq.client.offsets import OffsetTracker


@given(st.integers(0, 1000), st.lists(st.integers(1, 20), min_size=1, max_size=10), st.data())
def test_committable_is_lowest_unacked(start, batch_sizes, data):
    t = OffsetTracker(start)
    pulled: list[int] = []
    nxt = start
    for n in batch_sizes:
        offs = list(range(nxt, nxt + n))
        nxt += n
        t.add(offs, nxt)
        pulled += offs
    acked = data.draw(st.lists(st.sampled_from(pulled), unique=True))
    for o in acked:
        t.ack(o)
        unacked = [p for p in pulled if p not in set(acked[: acked.index(o) + 1])]
        assert t.committable() == (min(unacked) if unacked else nxt)
    assert t.in_flight() == len(pulled) - len(acked)


def test_empty_pull_advances_next_offset_only_when_nothing_in_flight():
    t = OffsetTracker(5)
    t.add([5, 6], 7)
    t.add([], 9)          # e.g. filtered by tag: nothing delivered
    assert t.committable() == 5
    t.ack(6)
    assert t.committable() == 5
    t.ack(5)
    assert t.committable() == 9


def test_repeated_and_unknown_acks_are_ignored():
    t = OffsetTracker(0)
    t.add([0, 1, 2], 3)
    t.ack(1)
    t.ack(1)
    t.ack(77)
    t.ack(-1)
    assert t.committable() == 0 and t.in_flight() == 2


def test_offsets_must_increase():
    t = OffsetTracker(0)
    t.add([0, 1], 2)
    with pytest.raises(ValueError):
        t.add([1], 2)


def test_reset_forgets_in_flight():
    t = OffsetTracker(0)
    t.add([0, 1], 2)
    t.reset(50)
    assert t.committable() == 50 and t.in_flight() == 0


def test_ack_many_matches_one_by_one_acks() -> None:
    import random

    rnd = random.Random(7)
    for _ in range(200):
        offs = sorted(rnd.sample(range(100), rnd.randint(1, 30)))
        a, b = OffsetTracker(0), OffsetTracker(0)
        a.add(offs, 100)
        b.add(offs, 100)
        acks = offs[:]
        if rnd.random() < 0.5:
            rnd.shuffle(acks)
        acks = acks[:rnd.randint(0, len(acks))]
        for i in range(0, len(acks), 3):
            a.ack_many(acks[i:i + 3])
            for o in acks[i:i + 3]:
                b.ack(o)
            assert (a.committable(), a.in_flight()) == (b.committable(), b.in_flight())
