"""The graceful handoff's pure rules (broker/ha/handoff.py): the successor choice over every small
set, and the steps (never elected before every in-flight send is answered and the successor holds
the whole log; a deadline before the election fails it, after the election finishes it)."""

from __future__ import annotations

import itertools

import pytest

from orbitmq.broker.ha.handoff import Handoff, HandoffRefused, Step, choose_successor


def test_successor_choice_over_every_small_set() -> None:
    ids = (1, 2, 3, 4)
    for members in itertools.chain.from_iterable(itertools.combinations(ids, n) for n in range(1, 5)):
        for learners in ((), (4,)):
            for acks in itertools.product((-1, 10, 20), repeat=3):
                ack = {2: acks[0], 3: acks[1], 4: acks[2]}
                pool = [b for b in members if b != 1 and b not in learners and ack.get(b, -1) >= 0]
                for preferred in (0, 1, 2, 3, 4):
                    try:
                        got = choose_successor(1, set(members), ack, set(learners), preferred)
                    except HandoffRefused as e:
                        if preferred == 1:
                            assert e.code == "ALREADY_MASTER"
                        elif preferred:
                            assert e.code == "NOT_CANDIDATE" and preferred not in pool
                        else:
                            assert e.code == "NO_CANDIDATE" and not pool
                        continue
                    assert got in pool and got != 1 and got not in learners
                    if preferred:
                        assert got == preferred
                    else:   # the one holding the most, then the lowest id
                        assert got == min(pool, key=lambda b: (-ack[b], b))


def test_steps_wait_for_in_flight_sends_then_the_successor_then_the_election() -> None:
    h = Handoff(2, deadline=10.0)
    assert h.advance(1.0, waiters=3, successor_ack=50, log_end=100) is Step.DRAIN
    assert h.advance(1.1, waiters=0, successor_ack=50, log_end=100) is Step.CATCH_UP
    assert h.advance(1.2, waiters=0, successor_ack=99, log_end=100) is Step.CATCH_UP
    assert h.advance(1.3, waiters=0, successor_ack=100, log_end=100) is Step.ELECT
    assert h.advance(1.4, 0, 0, 0) is Step.ELECT                  # not elected yet: stays
    assert h.advance(1.5, 0, 0, 0, elected=True) is Step.AWAIT_ROLE
    assert h.advance(1.6, 0, 0, 0, elected=True) is Step.AWAIT_ROLE
    assert h.advance(1.7, 0, 0, 0, elected=True, following=True) is Step.DONE
    assert h.advance(99.0, 5, 0, 100) is Step.DONE                 # final


@pytest.mark.parametrize("waiters,ack", [(1, 100), (0, 99)])
def test_a_deadline_before_the_election_fails_it_and_after_it_finishes_it(waiters: int, ack: int) -> None:
    h = Handoff(2, deadline=5.0)
    assert h.advance(5.0, waiters, ack, 100) is Step.FAILED       # this replica stays master
    assert h.advance(6.0, 0, 100, 100) is Step.FAILED
    h = Handoff(2, deadline=5.0)
    h.advance(1.0, 0, 100, 100, elected=True)
    assert h.step is Step.AWAIT_ROLE
    assert h.advance(5.0, 0, 0, 0, elected=True) is Step.DONE     # no way back once the epoch moved
    h = Handoff(2, deadline=5.0)
    assert h.advance(1.0, 0, 100, 100, elected=True, following=True) is Step.DONE   # all at once
