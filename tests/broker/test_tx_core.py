"""Transactional message rules (broker/tx_core.py)."""

from __future__ import annotations

import pytest

from orbitmq.broker import tx_core as tc


def test_open_end_and_unknown():
    st: dict = {}
    tc.apply(st, tc.open_event("t1", 0, "orders", 1000, 5000))
    with pytest.raises(tc.TxError):
        tc.end(st, "t1", "other")
    tx, ev = tc.end(st, "t1", "orders")
    assert tx.half_offset == 0
    tc.apply(st, ev)
    with pytest.raises(tc.TxError) as e:
        tc.end(st, "t1", "orders")
    assert e.value.code == "INVALID_TRANSACTION_ID"


def test_orphans_are_checked_every_interval_then_given_up():
    st: dict = {}
    tc.apply(st, tc.open_event("a", 0, "t", 0, 5000))
    tc.apply(st, tc.open_event("b", 1, "t", 3000, 5000))
    assert tc.due(st, 4999, 1000, 2) == ([], [])
    checks, give = tc.due(st, 5000, 1000, 2)
    assert [c[0] for c in checks] == ["a"] and give == []
    for _i, ev in checks:
        tc.apply(st, ev)
    assert tc.due(st, 5500, 1000, 2) == ([], [])
    checks, _ = tc.due(st, 8000, 1000, 2)
    assert [c[0] for c in checks] == ["a", "b"]
    for _i, ev in checks:
        tc.apply(st, ev)
    checks, give = tc.due(st, 9000, 1000, 2)
    assert give == ["a"] and [c[0] for c in checks] == ["b"]
    # replaying the same events from scratch gives the same state
    assert st["a"].checks == 2


def test_unknown_event():
    with pytest.raises(ValueError):
        tc.apply({}, {"k": "nope"})
