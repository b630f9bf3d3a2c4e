"""What a producer does after a failed send attempt: a pure core (no I/O, no clock; time passed in).

Owns: whether to try again before the send's deadline, whether the next attempt must stay on the
same broker set (the failed attempt may have stored the messages there: only the broker set that
holds a copy can answer a retry with the original receipts, so moving elsewhere would store a
duplicate), whether the cached route must be re-read first, and how long to wait. Never sends.
"""

from __future__ import annotations

from dataclasses import dataclass

# Errors after which the route is re-read before the next attempt: the master may have changed.
REFRESH_CODES = frozenset({"NOT_MASTER", "FENCED", "STALE_EPOCH", "UNAVAILABLE", "TIMEOUT", "NO_ROUTE",
                           "TOPIC_NOT_FOUND", "IN_SYNC_REPLICAS_NOT_ENOUGH", "REPLICATION_TIMEOUT",
                           "NO_PERMISSION", "CANCELLED"})
MIN_ATTEMPT_S = 0.02   # no new attempt with less time than this left
FIRST_DELAY_S = 0.02
MAX_DELAY_S = 0.2
PROBE_S = 0.25         # an attempt unanswered this long re-reads the route (has the master moved?)


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, as the policy needs it."""

    code: str             # the ErrorCode name (or UNAVAILABLE / TIMEOUT / NO_ROUTE / CANCELLED)
    retriable: bool       # the error class says another attempt may succeed
    not_stored: bool      # certainly nothing was stored (refused before writing, or never sent)
    broker_set: str | None  # where the attempt went (None: it never left the client)
    address: str = ""       # the broker the attempt went to
    master_hint: str = ""   # NOT_MASTER answers name the set's master (orbitmq-master trailing metadata)


@dataclass(frozen=True, slots=True)
class Decision:
    retry: bool
    delay_s: float = 0.0
    stay_on: str | None = None  # the next attempt must go to this broker set
    refresh_route: bool = False
    go_to: str | None = None    # the next attempt goes straight to this master (same queue)


def decide(f: Failure, *, attempt: int, retries: int, time_left_s: float, topic_known: bool,
           stay_on: str | None, hinted: bool = False) -> Decision:
    """After the `attempt`-th (1-based) failed attempt with `time_left_s` before the deadline.

    `retries` = 0 disables retrying. A topic this producer has routed before that is suddenly
    TOPIC_NOT_FOUND is retried (a new master may not announce it yet), an unknown one is not.
    Once an attempt may have stored the messages, every later attempt stays on that broker set.
    A NOT_MASTER answer naming another master (a master that handed off says where mastership
    went) sends the next attempt there at once, with no wait and no route lookup; after a hint
    was followed once in this send (`hinted`), hints are still followed but after the usual
    backoff (two brokers naming each other while an election settles must not spin).
    """
    retriable = f.retriable or (f.code == "TOPIC_NOT_FOUND" and topic_known)
    stay = stay_on
    if stay is None and not f.not_stored and f.broker_set is not None:
        stay = f.broker_set
    refresh = f.code in REFRESH_CODES
    delay = min(MAX_DELAY_S, FIRST_DELAY_S * (2 ** max(0, attempt - 1)))
    go_to = f.master_hint if (f.code == "NOT_MASTER" and f.master_hint and f.master_hint != f.address) else None
    if go_to is not None and not hinted:
        delay = 0.0
    if retries <= 0 or not retriable or time_left_s - delay < MIN_ATTEMPT_S:
        return Decision(False, stay_on=stay, refresh_route=refresh)
    return Decision(True, delay, stay, refresh and go_to is None, go_to)


def moved(attempt_master: str, route_master: str | None) -> bool:
    """An unanswered attempt went to `attempt_master`; the route now names `route_master`: give up on
    this attempt and go to the new master (the retry is deduplicated there if the old one stored it)."""
    return bool(route_master) and route_master != attempt_master
