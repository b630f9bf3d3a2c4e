"""Transactional messages on one `MessageStore`: the shell around `tx_core`.

Owns: storing half messages in `RMQ_SYS_TRANS_HALF_TOPIC` (queue 0, real topic in a property), the
open transactions (in memory under a lock; each change first logged as an extension META record
`x.tx`, folded by the dispatcher into index keys `Xt<id>` so a restart or a follower has them),
committing (the half message is stored again in its real topic, then the transaction is ended)
or rolling back, and listing the orphans due for a check. It never talks to producers (the proxy
sends the checks over Telemetry).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from orbitmq.broker import tx_core as tc
from orbitmq.broker.store import MessageStore, PutResult
from orbitmq.broker.store.record import Message

log = logging.getLogger("orbitmq.broker.tx")

OP_TX = "x.tx"
HALF_TOPIC = "RMQ_SYS_TRANS_HALF_TOPIC"
PROP_REAL_TOPIC = "REAL_TOPIC"
DB_PREFIX = b"Xt"


class TxService:
    """Create before `store.open()` (it chains the dispatcher hook), `load()` after."""

    def __init__(self, store: MessageStore) -> None:
        self.store = store
        self._lock = threading.RLock()
        self.open_txs: dict[str, tc.OpenTx] = {}
        self._disp_lock = threading.Lock()
        prev = store.ext_hook

        def hook(wb: Any, op: dict, off: int) -> None:
            if op.get("op") == OP_TX:
                self._on_dispatch(wb, op)
            elif prev is not None:
                prev(wb, op, off)

        store.ext_hook = hook

    def _on_dispatch(self, wb: Any, op: dict) -> None:
        ev = op["e"]
        key = DB_PREFIX + ev["id"].encode()
        with self._disp_lock:
            if ev["k"] == "end":
                wb.delete(key)
                return
            raw = self.store.db.get(key)
            st = {} if raw is None else {ev["id"]: tc.OpenTx(**json.loads(raw))}
            if ev["k"] == "check" and not st:
                return
            tc.apply(st, ev)
            tx = st[ev["id"]]
            wb.put(key, json.dumps({"half_offset": tx.half_offset, "topic": tx.topic, "check_at": tx.check_at,
                                    "checks": tx.checks}).encode())

    def load(self, timeout: float = 30.0) -> int:
        self.store.wait_dispatched(self.store.confirm_offset, timeout)
        with self._lock:
            self.open_txs = {k[len(DB_PREFIX):].decode(): tc.OpenTx(**json.loads(v))
                             for k, v in self.store.db.scan(DB_PREFIX)}
            return len(self.open_txs)

    def _log(self, event: dict) -> None:
        self.store.append_ext({"op": OP_TX, "e": event})
        tc.apply(self.open_txs, event)

    def put_half(self, record: Message, now: int, check_after_ms: int) -> PutResult:
        """Store a half message; its transaction id is the message id."""
        if self.store.get_topic_config(HALF_TOPIC) is None:
            self.store.put_topic_config(HALF_TOPIC, {"read_queues": 1, "write_queues": 1, "perm": 6, "order": False,
                                                     "attributes": {"system": "true"}})
        real = record.topic
        record.properties = {**record.properties, PROP_REAL_TOPIC: real}
        record.topic = HALF_TOPIC
        record.queue_id = 0
        with self._lock:
            r = self.store.put(record)
            self._log(tc.open_event(r.msg_id, r.physical_offset, real, now, check_after_ms))
        return r

    def half_message(self, tx: tc.OpenTx) -> Message | None:
        """The half message as it will be stored in its real topic (None if it expired)."""
        m = self.store.get_by_physical_offset(tx.half_offset)
        if m is None or m.topic != HALF_TOPIC:
            return None
        props = dict(m.properties)
        props.pop(PROP_REAL_TOPIC, None)
        return Message(tx.topic, m.body, 0, m.tags, list(m.keys), props, m.msg_id, born_timestamp=m.born_timestamp,
                       born_host=m.born_host)

    def end(self, tx_id: str, topic: str, commit: bool, put_real: Callable[[Message], Any]) -> None:
        """Commit (store the message in its topic with `put_real`) or roll back; TxError if not open."""
        with self._lock:
            tx, ev = tc.end(self.open_txs, tx_id, topic)
            if commit:
                m = self.half_message(tx)
                if m is None:
                    raise tc.TxError("MESSAGE_NOT_FOUND", f"half message of transaction {tx_id!r} expired")
                put_real(m)
            self._log(ev)
        log.info("transaction %s %s (topic %s)", tx_id, "committed" if commit else "rolled back", topic)

    def due(self, now: int, interval_ms: int, max_checks: int) -> list[tuple[str, Message]]:
        """Orphans to check now (their check is logged as sent); ones checked max_checks times roll back."""
        out = []
        with self._lock:
            checks, give_up = tc.due(self.open_txs, now, interval_ms, max_checks)
            for tx_id in give_up:
                log.warning("transaction %s unresolved after %d checks: rolled back", tx_id, max_checks)
                self._log({"k": "end", "id": tx_id})
            for tx_id, ev in checks:
                m = self.half_message(self.open_txs[tx_id])
                self._log(ev)
                if m is not None:
                    out.append((tx_id, m))
        return out
