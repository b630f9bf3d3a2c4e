"""Roles (pure): what a controller view asks of a replica, the transition table, new epochs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from orbitmq.broker.ha.epochs import EpochEntry
from orbitmq.broker.ha.roles import TRANSITIONS, Change, Role, decide, master_epoch_start, next_role


def test_views_map_to_changes():
    assert decide(Role.MASTER, 5, 1, False, 2, 4, "h2", "") is Change.IGNORE          # older epoch
    assert decide(Role.NONE, 0, 1, False, 1, 1, "h1", "") is Change.BECOME_MASTER
    assert decide(Role.MASTER, 1, 1, False, 1, 1, "h1", "") is Change.ADOPT_SSS
    assert decide(Role.MASTER, 1, 1, False, 1, 2, "h1", "") is Change.BECOME_MASTER   # re-elected, new epoch
    assert decide(Role.LEARNER, 1, 4, True, 4, 2, "h4", "h1") is Change.REFUSE_MASTER
    assert decide(Role.FOLLOWER, 2, 3, False, 1, 2, "h1", "h1") is Change.KEEP
    assert decide(Role.FOLLOWER, 2, 3, False, 1, 2, "h9", "h1") is Change.FOLLOW       # master moved
    assert decide(Role.MASTER, 2, 3, False, 1, 3, "h1", "") is Change.FOLLOW
    assert decide(Role.MASTER, 2, 3, False, 0, 3, "", "") is Change.NO_MASTER
    assert decide(Role.MASTER, 2, 3, False, None, 3, "", "") is Change.NO_MASTER


@given(role=hs.sampled_from([Role.NONE, Role.MASTER, Role.FOLLOWER, Role.LEARNER]), local=hs.integers(0, 3),
       me=hs.integers(1, 3), learner=hs.booleans(), master=hs.one_of(hs.none(), hs.integers(0, 3)),
       epoch=hs.integers(0, 4), ha=hs.sampled_from(["", "h1", "h2"]), following=hs.sampled_from(["", "h1"]))
def test_every_decided_change_has_a_transition_and_learners_never_become_master(role, local, me, learner, master,
                                                                                 epoch, ha, following):
    if learner and role is Role.MASTER:
        return
    if not learner and role is Role.LEARNER:
        return
    change = decide(role, local, me, learner, master, epoch, ha, following)
    new = next_role(role, change, learner)
    if learner:
        assert new is not Role.MASTER
    if new is Role.MASTER and role is not Role.MASTER:
        assert master == me and epoch >= local


def test_missing_transition_is_an_error_and_the_table_never_makes_a_learner_master():
    assert (Role.LEARNER, Change.BECOME_MASTER) not in TRANSITIONS
    with pytest.raises(ValueError):
        next_role(Role.LEARNER, Change.BECOME_MASTER, True)


def test_master_epoch_start():
    assert master_epoch_start(None, 1, 0) == (True, 0)
    assert master_epoch_start(EpochEntry(2, 10), 3, 50) == (True, 50)
    assert master_epoch_start(EpochEntry(3, 10), 3, 50) == (False, 10)   # restarted master of the same epoch
    assert master_epoch_start(EpochEntry(4, 10), 3, 50) is None          # stale order
