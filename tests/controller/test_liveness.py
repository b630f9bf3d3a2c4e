"""The leader's liveness table (pure): timeouts, closed-session hints, newer sessions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from orbitmq.controller.election import Live
from orbitmq.controller.liveness import Liveness

K = (("c", "s"), 1)


def test_heartbeat_timeout():
    lv = Liveness(2.5, 2.0)
    assert not lv.alive(K, 0.0)
    lv.record(K, Live(), 10.0, 0)
    assert lv.alive(K, 12.5) and not lv.alive(K, 12.51)


def test_closed_session_is_a_hint_only_after_the_lease():
    lv = Liveness(2.5, 2.0)
    lv.record(K, Live(), 10.0, 0, gen=7)
    lv.session_closed(K, 7)
    assert lv.alive(K, 11.9)           # its lease may still hold: not replaced yet
    assert not lv.alive(K, 12.0)       # lease over: dead before the 2.5 s timeout


def test_closing_an_older_session_does_not_kill_a_broker_with_a_newer_one():
    lv = Liveness(2.5, 2.0)
    lv.record(K, Live(), 10.0, 0, gen=1)
    lv.record(K, Live(), 10.5, 0, gen=2)    # reconnected on a new stream
    lv.session_closed(K, 1)                 # the old stream's close arrives late
    assert lv.alive(K, 12.9)
    lv.record(K, Live(), 13.0, 0)           # a unary heartbeat keeps the live session as newest
    lv.session_closed(K, 2)
    assert lv.alive(K, 14.9) and not lv.alive(K, 15.0)


def test_a_new_heartbeat_clears_the_hint():
    lv = Liveness(2.5, 2.0)
    lv.record(K, Live(), 10.0, 0, gen=1)
    lv.session_closed(K, 1)
    lv.record(K, Live(), 11.0, 0, gen=3)
    assert lv.alive(K, 13.4)


def test_reports_never_go_backwards():
    lv = Liveness(2.5, 2.0)
    lv.record(K, Live(epoch=3, max_offset=100, confirm_offset=90), 1.0, 0)
    lv.record(K, Live(epoch=3, max_offset=50, confirm_offset=95, priority=4), 2.0, 0)
    e = lv.get(K)
    assert (e.live.epoch, e.live.max_offset, e.live.confirm_offset, e.live.priority) == (3, 100, 95, 4)
    assert e.last_seen == 2.0


def test_lease_must_not_exceed_timeout():
    with pytest.raises(ValueError):
        Liveness(2.0, 2.5)


@given(events=hs.lists(hs.tuples(hs.sampled_from(["hb", "close"]), hs.integers(0, 4),
                                 hs.floats(0, 1.0)), max_size=30),
       probe=hs.floats(0, 5.0))
@settings(max_examples=300, deadline=None)
def test_alive_only_within_the_timeout_and_never_before_the_lease_after_a_heartbeat(events, probe):
    lv = Liveness(2.5, 2.0)
    now = 0.0
    last_hb = None
    for kind, gen, dt in events:
        now += dt
        if kind == "hb":
            lv.record(K, Live(), now, 0, gen)
            last_hb = now
        else:
            lv.session_closed(K, gen)
    t = now + probe
    if last_hb is None:
        assert not lv.alive(K, t)
        return
    if t - last_hb > 2.5:
        assert not lv.alive(K, t)
    if t - last_hb < 2.0:
        assert lv.alive(K, t)      # whatever closed: a broker whose lease may hold is never dead
