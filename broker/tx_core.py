"""Transactional (half) message rules (pure): which transactions are open, when each is checked next.

A half message is stored in the system topic `RMQ_SYS_TRANS_HALF_TOPIC`, invisible to consumers.
Its transaction is *open* until the producer commits (the message is then stored in its real
topic) or rolls back (dropped). An open transaction older than its check time is an orphan: the
server asks a producer of the topic (over Telemetry) to resolve it, then checks again later;
after `max_checks` unanswered checks it is rolled back. Events (JSON-able dicts) are folded by
`apply`; the shell logs each one as an extension META record first. No clock: `now` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass


class TxError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class OpenTx:
    half_offset: int  # physical offset of the half message in the commitlog
    topic: str  # real topic
    check_at: int  # ms
    checks: int = 0


def apply(state: dict[str, OpenTx], event: dict) -> dict[str, OpenTx]:
    kind = event["k"]
    if kind == "open":
        state[event["id"]] = OpenTx(event["q"], event["t"], event["at"], 0)
    elif kind == "check":
        tx = state.get(event["id"])
        if tx is not None:
            tx.check_at, tx.checks = event["at"], event["n"]
    elif kind == "end":
        state.pop(event["id"], None)
    else:
        raise ValueError(f"unknown tx event {kind!r}")
    return state


def open_event(tx_id: str, half_offset: int, topic: str, now: int, check_after_ms: int) -> dict:
    return {"k": "open", "id": tx_id, "q": half_offset, "t": topic, "at": now + check_after_ms}


def end(state: dict[str, OpenTx], tx_id: str, topic: str) -> tuple[OpenTx, dict]:
    """The open transaction and the event ending it; TxError if it is not open (or not of `topic`)."""
    tx = state.get(tx_id)
    if tx is None:
        raise TxError("INVALID_TRANSACTION_ID", f"transaction {tx_id!r} is not open (unknown, or already "
                      "committed or rolled back)")
    if tx.topic != topic:
        raise TxError("INVALID_TRANSACTION_ID", f"transaction {tx_id!r} belongs to topic {tx.topic!r}, not {topic!r}")
    return tx, {"k": "end", "id": tx_id}


def due(state: dict[str, OpenTx], now: int, interval_ms: int, max_checks: int) -> tuple[list[tuple[str, dict]], list[str]]:
    """Orphans to check now (id, the check event to log) and ones to roll back (checked max_checks times)."""
    checks, give_up = [], []
    for tx_id, tx in sorted(state.items(), key=lambda kv: kv[1].check_at):
        if tx.check_at > now:
            continue
        if tx.checks >= max_checks:
            give_up.append(tx_id)
        else:
            checks.append((tx_id, {"k": "check", "id": tx_id, "at": now + interval_ms, "n": tx.checks + 1}))
    return checks, give_up
