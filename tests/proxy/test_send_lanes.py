"""The batching rule of the cluster-mode proxy's forwards (proxy/send_lanes.py), exhaustively and pure."""

from __future__ import annotations

import pytest

from orbitmq.proxy.send_lanes import Lanes


def test_a_lone_send_goes_out_at_once_and_alone() -> None:
    lanes = Lanes()
    assert lanes.add("q", "a", 10) is True
    assert lanes.take("q") == ["a"]
    assert lanes.finish("q") is False
    assert len(lanes) == 0  # an idle lane is forgotten


def test_sends_arriving_during_a_call_leave_together_in_arrival_order() -> None:
    lanes = Lanes()
    assert lanes.add("q", 1, 10)
    assert lanes.take("q") == [1]
    for i in range(2, 6):
        assert lanes.add("q", i, 10) is False  # the only slot is busy: wait
    assert lanes.take("q") == []  # no free slot
    assert lanes.finish("q") is True
    assert lanes.take("q") == [2, 3, 4, 5]
    assert lanes.finish("q") is False


def test_lanes_are_independent() -> None:
    lanes = Lanes()
    assert lanes.add("a", 1, 1) and lanes.add("b", 2, 1)
    assert lanes.take("a") == [1]
    assert lanes.add("a", 3, 1) is False and lanes.add("b", 4, 1) is True
    assert lanes.take("b") == [2, 4]


def test_more_slots_let_two_calls_fly() -> None:
    lanes = Lanes()
    assert lanes.add("n", 1, 1, max_in_flight=2)
    assert lanes.take("n") == [1]
    assert lanes.add("n", 2, 1, max_in_flight=2)
    assert lanes.take("n") == [2]
    assert lanes.add("n", 3, 1, max_in_flight=2) is False
    assert lanes.add("n", 4, 1, max_in_flight=2) is False
    assert lanes.finish("n") is True
    assert lanes.take("n") == [3, 4]


def test_batches_respect_count_and_bytes_but_always_carry_one() -> None:
    lanes = Lanes(max_count=3, max_bytes=100)
    lanes.add("q", "first", 1)
    assert lanes.take("q") == ["first"]
    for i, size in enumerate([40, 40, 40, 10, 500, 5]):
        lanes.add("q", i, size)
    assert lanes.finish("q")
    assert lanes.take("q") == [0, 1]  # a third 40 would pass 100 bytes
    assert lanes.finish("q")
    assert lanes.take("q") == [2, 3]  # then 500 would pass it
    assert lanes.finish("q")
    assert lanes.take("q") == [4]  # larger than the limit alone: it still goes
    assert lanes.finish("q")
    assert lanes.take("q") == [5]
    assert lanes.finish("q") is False and lanes.waiting("q") == 0


def test_count_limit() -> None:
    lanes = Lanes(max_count=2)
    lanes.add("q", 0, 1)
    lanes.take("q")
    for i in range(1, 6):
        lanes.add("q", i, 1)
    batches = []
    while lanes.finish("q"):
        batches.append(lanes.take("q"))
    assert batches == [[1, 2], [3, 4], [5]]


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        Lanes(max_count=0)
    with pytest.raises(ValueError):
        Lanes(max_bytes=0)
