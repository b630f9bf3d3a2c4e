"""Timer index rules (broker/timer_core.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orbitmq.broker import timer_core as tc


def test_wheel_orders_by_delivery_time_not_arrival():
    w = tc.Wheel()
    for q, at in enumerate([5000, 1000, 3000, 1000]):
        w.add(at, q, 100 + q)
    assert w.next_at() == 1000
    assert w.due(999) == []
    assert [x[1] for x in w.due(3000)] == [1, 3, 2]
    assert len(w) == 1 and w.next_at() == 5000
    assert [x[1] for x in w.due(10**13)] == [0]


@given(st.permutations(list(range(12))))
def test_fired_watermark_any_order(order):
    f = tc.Fired()
    for i, q in enumerate(order):
        tc.apply(f, {"k": "fire", "q": [q]})
        assert all(f.is_fired(x) for x in order[:i + 1])
        assert not any(f.is_fired(x) for x in order[i + 1:])
    assert f.watermark == 12 and f.above == set()
    assert tc.Fired.from_json(f.to_json()) == f


def test_skip_moves_the_watermark():
    f = tc.apply(tc.Fired(), {"k": "fire", "q": [7]})
    tc.apply(f, {"k": "skip", "to": 5})
    assert f.watermark == 5 and f.is_fired(7) and not f.is_fired(6)
    tc.apply(f, {"k": "fire", "q": [5, 6]})
    assert f.watermark == 8 and f.above == set()
