"""The producer's retry rules (client/send_policy.py), exhaustively over their inputs."""

from __future__ import annotations

import itertools

from orbitmq.client.send_policy import MAX_DELAY_S, MIN_ATTEMPT_S, Decision, Failure, decide, moved

CODES = ["NOT_MASTER", "FENCED", "UNAVAILABLE", "TIMEOUT", "REPLICATION_TIMEOUT", "IN_SYNC_REPLICAS_NOT_ENOUGH",
         "TOPIC_NOT_FOUND", "BODY_TOO_LARGE", "NO_ROUTE", "INTERNAL"]


def test_rules_hold_for_every_combination() -> None:
    for code, retriable, not_stored, bset, attempt, retries, left, known, stay in itertools.product(
            CODES, (True, False), (True, False), (None, "a"), (1, 2, 9), (0, 2), (0.0, 0.05, 3.0), (True, False),
            (None, "b")):
        d = decide(Failure(code, retriable, not_stored, bset), attempt=attempt, retries=retries, time_left_s=left,
                   topic_known=known, stay_on=stay)
        assert isinstance(d, Decision)
        # never past the deadline, never when disabled, never for a permanent error
        if d.retry:
            assert retries > 0 and left - d.delay_s >= MIN_ATTEMPT_S and 0 < d.delay_s <= MAX_DELAY_S
            assert retriable or (code == "TOPIC_NOT_FOUND" and known)
        # once a set may hold a copy, every later attempt stays there (no duplicate elsewhere)
        if stay is not None:
            assert d.stay_on == stay
        elif bset is not None and not not_stored:
            assert d.stay_on == bset
        else:
            assert d.stay_on is None


def test_examples() -> None:
    # a timeout on the master: it may have stored it; retry there (its new master) after a route refresh
    d = decide(Failure("TIMEOUT", True, False, "a"), attempt=1, retries=2, time_left_s=2.0, topic_known=True,
               stay_on=None)
    assert d.retry and d.stay_on == "a" and d.refresh_route
    # refused before writing: free to go to another set
    d = decide(Failure("IN_SYNC_REPLICAS_NOT_ENOUGH", True, True, "a"), attempt=1, retries=2, time_left_s=2.0,
               topic_known=True, stay_on=None)
    assert d.retry and d.stay_on is None
    # a topic we routed before, not found now (a new master not announcing it yet): retried
    assert decide(Failure("TOPIC_NOT_FOUND", False, True, None), attempt=1, retries=2, time_left_s=2.0,
                  topic_known=True, stay_on=None).retry
    assert not decide(Failure("TOPIC_NOT_FOUND", False, True, None), attempt=1, retries=2, time_left_s=2.0,
                      topic_known=False, stay_on=None).retry
    # delays grow and are capped
    delays = [decide(Failure("NO_ROUTE", True, True, None), attempt=a, retries=2, time_left_s=9.0, topic_known=True,
                     stay_on=None).delay_s for a in range(1, 10)]
    assert delays == sorted(delays) and delays[-1] == MAX_DELAY_S
    assert moved("a:1", "b:2") and not moved("a:1", "a:1") and not moved("a:1", None)


def test_a_not_master_answer_naming_the_new_master_is_followed_at_once() -> None:
    for code, hint, addr, hinted, left, retries in itertools.product(
            CODES, ("", "10.0.0.2:1", "10.0.0.1:1"), ("10.0.0.1:1",), (False, True), (0.0, 0.05, 3.0), (0, 2)):
        d = decide(Failure(code, code != "BODY_TOO_LARGE", True, "a", addr, hint), attempt=1, retries=retries,
                   time_left_s=left, topic_known=True, stay_on=None, hinted=hinted)
        follows = code == "NOT_MASTER" and hint not in ("", addr)
        if not d.retry:
            continue
        assert left - d.delay_s >= MIN_ATTEMPT_S
        if follows:
            assert d.go_to == hint and not d.refresh_route   # no route lookup in between
            assert (d.delay_s == 0.0) == (not hinted)         # at once, unless a hint was followed already
        else:
            assert d.go_to is None and d.delay_s > 0
    # the handoff case: the old master names the new one; no wait, no route refresh
    d = decide(Failure("NOT_MASTER", True, True, "a", "m1:1", "m2:1"), attempt=1, retries=2, time_left_s=2.9,
               topic_known=True, stay_on=None)
    assert d == Decision(True, 0.0, None, False, "m2:1")
    # two brokers naming each other: followed again, but after the usual backoff
    d = decide(Failure("NOT_MASTER", True, True, "a", "m2:1", "m1:1"), attempt=2, retries=2, time_left_s=2.9,
               topic_known=True, stay_on=None, hinted=True)
    assert d.go_to == "m1:1" and d.delay_s > 0
