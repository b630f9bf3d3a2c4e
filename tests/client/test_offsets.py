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


class Reference:
    """The tracker's rule by brute force: in flight = pulled and not acknowledged."""

    def __init__(self, next_offset: int) -> None:
        self.pulled: list[int] = []
        self.acked: set[int] = set()
        self.next_offset = next_offset

    def add(self, offsets: list[int], next_offset: int) -> None:
        self.pulled += offsets
        self.next_offset = max(self.next_offset, next_offset)

    def ack(self, o: int) -> None:
        if o in self.pulled:
            self.acked.add(o)

    def committable(self) -> int:
        left = [p for p in self.pulled if p not in self.acked]
        return min(left) if left else self.next_offset

    def in_flight(self) -> int:
        return len(self.pulled) - len(self.acked)


@given(st.integers(0, 50), st.lists(st.tuples(st.integers(0, 3), st.integers(1, 12), st.booleans()), min_size=1,
                                   max_size=8), st.data())
def test_runs_behave_like_the_brute_force_rule(start, pulls, data):
    """Pulls with gaps (tag filtering) or without, acks one by one, as lists in any order, or as
    ranges (what poll() passes for consecutive messages): same committable and in-flight counts."""
    t, ref = OffsetTracker(start), Reference(start)
    nxt = start
    for gap, n, sparse in pulls:
        lo = nxt + gap
        offs = [o for i, o in enumerate(range(lo, lo + n)) if not sparse or i % 2 == 0]
        nxt = lo + n
        t.add(range(offs[0], offs[-1] + 1) if not sparse else offs, nxt)
        ref.add(offs, nxt)
        for _ in range(data.draw(st.integers(0, 3))):
            kind = data.draw(st.sampled_from(["one", "list", "range"]))
            if kind == "range":
                a = data.draw(st.integers(start, nxt))
                b = data.draw(st.integers(a, nxt + 2))
                acks = range(a, b)
            else:
                acks = data.draw(st.lists(st.integers(start - 2, nxt + 2), max_size=6))
            if kind == "one":
                for o in acks:
                    t.ack(o)
            else:
                t.ack_many(acks)
            for o in acks:
                ref.ack(o)
            assert (t.committable(), t.in_flight()) == (ref.committable(), ref.in_flight())


def test_a_range_over_an_offset_acknowledged_out_of_order_counts_it_once() -> None:
    """Found by the model test above: acking 1, then range(0, 2), left in_flight at -1."""
    t = OffsetTracker(0)
    t.add(range(0, 2), 2)
    t.ack_many(range(1, 3))
    t.ack_many(range(0, 2))
    assert (t.committable(), t.in_flight()) == (2, 0)
