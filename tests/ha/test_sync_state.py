"""Sync-state-set rules and the ack policy (pure cores, deterministic, time passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.broker.ha.ack_policy import AckPolicy, Lease, Verdict, acknowledged_upto, evaluate
from orbitmq.broker.ha.sync_state import SyncStateError, SyncStateSet

M = 1  # master id


def sss(members=(1, 2, 3), lag=5.0, now=0.0, epoch_start=0, confirm=0):
    return SyncStateSet(M, master_epoch=4, epoch_start=epoch_start, members=set(members), sss_epoch=7,
                        max_lag_s=lag, now=now, confirm_offset=confirm)


def test_confirm_is_what_every_member_holds():
    s = sss()
    assert s.confirm_offset(100) == 0  # members 2, 3 have not reported
    s.connected(2, False, 0)
    s.connected(3, False, 0)
    s.on_ack(2, 80, 100, 1)
    assert s.confirm_offset(100) == 0
    s.on_ack(3, 60, 100, 1)
    assert s.confirm_offset(100) == 60
    s.disconnected(3)  # keeps its last ack; confirm never goes backwards
    assert s.confirm_offset(100) == 60
    # a learner's ack never counts and a learner is never proposed
    s.connected(9, True, 1)
    s.on_ack(9, 100, 100, 1)
    assert 9 not in s.ack_set()


def test_lagging_member_is_removed_after_the_lag_time_and_returns_when_caught_up():
    s = sss()
    for f in (2, 3):
        s.connected(f, False, 0)
    s.on_ack(2, 100, 100, 1.0)
    s.on_ack(3, 100, 100, 1.0)
    assert s.propose(100, 3.0) is None
    # the master writes on; 3 stops acking
    for t in range(2, 12):
        s.on_ack(2, 100 * t, 100 * t, float(t))
    assert s.confirm_offset(1100) == 100
    p = s.propose(1100, 5.9)
    assert p is None  # 3 was caught up at t=1.0, lag 4.9 s
    p = s.propose(1100, 6.1)
    assert p is not None and p.removed == {3} and p.members == {1, 2}
    assert s.propose(1100, 6.2) is None  # one alter in flight
    assert s.ack_set() == {1, 2, 3}      # union while pending
    s.alter_done({1, 2}, 8)
    assert s.ack_set() == {1, 2}
    assert s.confirm_offset(1100) == 1100
    # 3 comes back: below the confirm offset it is not added; at it, it is
    s.on_ack(3, 900, 1100, 7.0)
    assert s.propose(1100, 7.0) is None
    s.on_ack(3, 1100, 1100, 7.5)
    p = s.propose(1100, 7.5)
    assert p is not None and p.added == {3} and p.members == {1, 2, 3}


def test_disconnected_member_is_proposed_for_removal_at_once():
    s = sss()
    s.connected(2, False, 0)
    s.connected(3, False, 0)
    s.disconnected(3)
    p = s.propose(0, 0.1)
    assert p is not None and p.removed == {3}


def test_failed_alter_keeps_the_union_until_a_newer_set_is_adopted():
    s = sss(members=(1, 2))
    s.connected(2, False, 0)
    s.connected(3, False, 0)
    s.on_ack(2, 50, 50, 0)
    s.on_ack(3, 50, 50, 0)
    p = s.propose(50, 0.5)
    assert p is not None and p.added == {3}
    s.alter_failed()  # e.g. the reply was lost but the expand may have committed (#5663)
    assert s.ack_set() == {1, 2, 3}
    assert not s.adopt({1, 2}, 6)  # older epoch: ignored
    assert s.adopt({1, 2, 3}, 8)
    assert s.ack_set() == {1, 2, 3} and s.sss_epoch == 8 and not s.sticky
    assert not s.adopt({2, 3}, 9)  # a set without us: we are no longer its master
    with pytest.raises(SyncStateError):
        s.alter_done({2, 3}, 10)


def test_expand_needs_current_epoch_start():
    s = sss(members=(1,), epoch_start=500, confirm=400)
    s.connected(2, False, 0)
    s.on_ack(2, 450, 450, 0)  # reached confirm but not the epoch start
    assert s.propose(600, 0.1) is None
    s.on_ack(2, 600, 600, 0.2)
    p = s.propose(600, 0.2)
    assert p is not None and p.added == {2}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ack", "write", "propose", "done", "fail", "disc", "conn"]),
                          st.integers(2, 4), st.integers(0, 200)), max_size=60))
def test_invariants_over_random_events(events):
    """Master always a member; learners never; confirm monotonic and never past any ack-set
    member's holding; at most one alter in flight."""
    s = sss(members=(1, 2, 3))
    master_max, now, last_confirm = 0, 0.0, 0
    learner = 4
    for kind, who, n in events:
        now += 0.5
        if kind == "write":
            master_max += n
        elif kind == "conn":
            s.connected(who, who == learner, now)
        elif kind == "disc":
            s.disconnected(who)
        elif kind == "ack":
            r = s.replicas.get(who)
            if r is not None and r.connected:
                s.on_ack(who, min(master_max, max(r.ack, 0) + n), master_max, now)
        elif kind == "propose":
            had = s.pending
            p = s.propose(master_max, now)
            if had is not None:
                assert p is None
            if p is not None:
                assert M in p.members and learner not in p.members
        elif kind == "done" and s.pending is not None:
            s.alter_done(s.pending.members, s.sss_epoch + 1)
        elif kind == "fail":
            s.alter_failed()
        c = s.confirm_offset(master_max)
        assert c >= last_confirm
        last_confirm = c
        assert M in s.members and learner not in s.members
        for m in s.ack_set():
            h = s.holding(m, master_max)
            assert h < 0 or c <= h, (m, h, c)


def test_ack_policy_all():
    p = AckPolicy()
    holds = {1: 100, 2: 100, 3: 40}
    assert evaluate(p, 100, {1, 2, 3}, holds.__getitem__, 3) is Verdict.WAIT
    assert evaluate(p, 40, {1, 2, 3}, holds.__getitem__, 3) is Verdict.ACK
    assert evaluate(p, 100, {1, 2}, holds.__getitem__, 3) is Verdict.ACK
    # a set of 3 replicas with only the master in sync may not acknowledge (default min 2)
    assert evaluate(p, 10, {1}, holds.__getitem__, 3) is Verdict.NOT_ENOUGH
    # a single-replica set (no followers configured) acknowledges on the master alone
    assert evaluate(p, 100, {1}, holds.__getitem__, 1) is Verdict.ACK
    assert evaluate(AckPolicy(min_replicas=3), 10, {1, 2}, holds.__getitem__, 3) is Verdict.NOT_ENOUGH


def test_ack_policy_count():
    p = AckPolicy(mode="count", min_replicas=2)
    holds = {1: 100, 2: 30, 3: 100}
    assert evaluate(p, 100, {1, 2, 3}, holds.__getitem__, 3) is Verdict.ACK
    assert evaluate(p, 100, {1, 2}, holds.__getitem__, 3) is Verdict.WAIT
    assert evaluate(p, 100, {1}, holds.__getitem__, 3) is Verdict.NOT_ENOUGH
    with pytest.raises(ValueError):
        AckPolicy(mode="some")
    with pytest.raises(ValueError):
        AckPolicy(min_replicas=0)


def test_lease():
    lease = Lease(2.0)
    assert not lease.valid(0.0)
    lease.renew(10.0)
    assert lease.valid(11.9) and not lease.valid(12.0)
    lease.renew(9.0)  # an older heartbeat answered late never extends the lease
    assert not lease.valid(12.0)
    assert lease.remaining(11.0) == pytest.approx(1.0)


def test_members_get_a_grace_period_to_connect_to_a_new_master():
    s = sss(members=(1, 2, 3), lag=3.0, now=100.0)
    assert s.propose(0, 101.0) is None      # not connected yet, within the grace period
    s.connected(2, False, 101.0)
    s.on_ack(2, 0, 0, 101.0)
    p = s.propose(0, 103.5)                 # 3 never showed up within max_lag_s
    assert p is not None and p.removed == {3}


@given(st.sampled_from(["all", "count"]), st.integers(-1, 4).filter(lambda n: n != 0),
       st.dictionaries(st.integers(1, 5), st.integers(-1, 100), min_size=1, max_size=5),
       st.integers(1, 5), st.integers(0, 101))
def test_acknowledged_upto_agrees_with_evaluate(mode, min_replicas, holds, replicas, end):
    p = AckPolicy(mode=mode, min_replicas=min_replicas)
    upto = acknowledged_upto(p, holds.keys(), holds.__getitem__, replicas)
    v = evaluate(p, end, holds.keys(), holds.__getitem__, replicas)
    if upto is None:
        assert v is Verdict.NOT_ENOUGH
    else:
        assert (v is Verdict.ACK) == (end <= upto)
        assert v is not Verdict.NOT_ENOUGH
