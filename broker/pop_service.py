"""Pop consumption on one `MessageStore`: the shell around `pop_core`.

Owns: the live pop state of every (group, topic, queue) (in memory, under one lock), writing each
state change as an extension META record (`x.pop`) before it takes effect, rebuilding the state
from the index after a restart (the dispatcher folds the same events into rocksdict keys `Xph...`
per queue and `Xpe...` per in-flight message, in its own batches), reading candidate messages
from the consume queues, and moving messages that ran out of attempts to the group's dead-letter
topic `%DLQ%<group>`.
It never decides who gets what (pop_core does) and holds no sockets.

Known limit: a truncation of the log (HA follower cutting a divergent tail) does not undo pop events
of the cut tail in the index; such a tail holds unconfirmed records only.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from orbitmq.broker import pop_core as pc
from orbitmq.broker.store import GetStatus, MessageStore
from orbitmq.broker.store.record import Message

log = logging.getLogger("orbitmq.broker.pop")

OP_POP = "x.pop"
PROP_MSG_GROUP = "__SHARDINGKEY"  # FIFO message group
PROP_DELIVER_MS = "TIMER_DELIVER_MS"  # DELAY: delivery time, epoch milliseconds
PROP_ORIGIN_TOPIC = "ORIGIN_TOPIC"
PROP_DLQ_ATTEMPTS = "DLQ_DELIVERY_ATTEMPTS"
DB_HEAD = b"Xph"  # + queue key -> {"next", "seq"}
DB_ENTRY = b"Xpe"  # + queue key + 0x00 + offset (8 bytes, big endian) -> [attempt, visible_at, seq, mgroup]


def dlq_topic(group: str) -> str:
    return f"%DLQ%{group}"


def _qkey(group: str, topic: str, qid: int) -> bytes:
    return json.dumps([group, topic, qid], separators=(",", ":")).encode()


def _entry_key(qk: bytes, offset: int) -> bytes:
    return DB_ENTRY + qk + b"\x00" + offset.to_bytes(8, "big")


@dataclass
class Received:
    message: Message
    handle: str
    attempt: int
    visible_at: int  # ms


class PopService:
    """Thread-safe. Create it before `store.open()` (it installs the dispatcher hook), `load()` after."""

    def __init__(self, store: MessageStore, broker_name: str) -> None:
        self.store = store
        self.broker = broker_name
        self._lock = threading.RLock()
        self._live: dict[tuple[str, str, int], pc.QueueState] = {}
        self._disp: dict[tuple[str, str, int], pc.QueueState] = {}
        self._disp_lock = threading.Lock()
        store.ext_hook = self._on_dispatch

    # ---- persistence ------------------------------------------------------------------------------

    def _on_dispatch(self, wb: Any, op: dict, _off: int) -> None:
        """Dispatcher thread: fold a logged event into the index (same batch as the checkpoint).
        Only what the event touched is written: the queue's header and its changed in-flight entries."""
        if op.get("op") != OP_POP:
            return
        key = (op["g"], op["t"], op["q"])
        qk = _qkey(*key)
        ev = op["e"]
        with self._disp_lock:
            st = self._disp.get(key)
            if st is None:
                st = self._disp[key] = self._read_state(qk)
            before = set(st.inflight)
            pc.apply(st, ev)
            wb.put(DB_HEAD + qk, json.dumps({"next": st.next, "seq": st.seq}).encode())
            if ev["k"] == "take":
                for item in ev["items"]:
                    e = st.inflight.get(item[0])
                    if e is not None:
                        wb.put(_entry_key(qk, item[0]), json.dumps([e.attempt, e.visible_at, e.seq, e.mgroup]).encode())
            for off in before - set(st.inflight):
                wb.delete(_entry_key(qk, off))

    def _read_state(self, qk: bytes) -> pc.QueueState:
        raw = self.store.db.get(DB_HEAD + qk)
        if raw is None:
            return pc.QueueState()
        h = json.loads(raw)
        st = pc.QueueState(h["next"], h["seq"])
        for k, v in self.store.db.scan(DB_ENTRY + qk + b"\x00"):
            a, vis, seq, g = json.loads(v)
            st.inflight[int.from_bytes(k[-8:], "big")] = pc.Inflight(a, vis, seq, g)
        return st

    def load(self, timeout: float = 30.0) -> int:
        """After open(): wait until the log is indexed, then take the indexed state as the live one."""
        self.store.wait_dispatched(self.store.confirm_offset, timeout)
        with self._lock:
            self._live = {}
            for k, _v in self.store.db.scan(DB_HEAD):
                qk = k[len(DB_HEAD):]
                g, t, q = json.loads(qk)
                self._live[(g, t, q)] = self._read_state(qk)
            return len(self._live)

    def _log(self, key: tuple[str, str, int], st: pc.QueueState, event: dict) -> None:
        """Write the event, then apply it (lock held: log order is apply order)."""
        self.store.append_ext({"op": OP_POP, "g": key[0], "t": key[1], "q": key[2], "e": event})
        pc.apply(st, event)

    def _state(self, key: tuple[str, str, int]) -> pc.QueueState:
        st = self._live.get(key)
        if st is None:
            st = self._live[key] = pc.QueueState(next=self.store.min_offset(key[1], key[2]))
        return st

    # ---- operations -------------------------------------------------------------------------------

    def receive(self, group: str, topic: str, queue_ids: list[int], batch: int, invisible_ms: int, now: int,
                max_attempts: int, fifo: bool = False, tags: set[str] | None = None) -> tuple[list[Received], int | None]:
        """Pop up to `batch` messages from the queues in order; also dead-letters what ran out of attempts.

        Returns the deliveries and the earliest time an in-flight message becomes visible (or None).
        """
        out: list[Received] = []
        wake: int | None = None
        for qid in queue_ids:
            if len(out) >= batch:
                break
            key = (group, topic, qid)
            with self._lock:
                st = self._state(key)
                got = self.store.get_messages(topic, qid, st.next, max_count=batch - len(out), tags=tags)
                if got.status == GetStatus.OFFSET_MOVED:
                    self._log(key, st, {"k": "reset", "next": got.next_offset, "min": got.min_offset})
                    got = self.store.get_messages(topic, qid, st.next, max_count=batch - len(out), tags=tags)
                by_off = {m.queue_offset: m for m in got.messages}
                cands = [pc.Candidate(m.queue_offset, m.properties.get(PROP_MSG_GROUP, "") if fifo else "",
                                      _int(m.properties.get(PROP_DELIVER_MS))) for m in got.messages]
                scanned = got.next_offset if got.status == GetStatus.FOUND else None
                r = pc.pop(st, now, cands, batch - len(out), invisible_ms, max_attempts, fifo, scanned)
                if r.dead_letter:
                    self._dead_letter(key, st, r.dead_letter, max_attempts)
                if r.event is not None:
                    self._log(key, st, r.event)
            for d in r.deliver:
                m = by_off.get(d.offset) or self._read(topic, qid, d.offset)
                if m is None:
                    log.warning("popped offset %d of %s/%d is gone (expired); skipping", d.offset, topic, qid)
                    continue
                h = pc.Handle(self.broker, topic, qid, d.offset, d.seq).encode()
                out.append(Received(m, h, d.attempt, d.visible_at))
            if r.wake_at is not None:
                wake = r.wake_at if wake is None else min(wake, r.wake_at)
        return out, wake

    def ack(self, group: str, topic: str, handle: str) -> None:
        h = self._handle(topic, handle)
        key = (group, topic, h.queue_id)
        with self._lock:
            st = self._live.get(key)
            if st is None:
                raise pc.PopError("INVALID_RECEIPT_HANDLE", f"group {group!r} holds no delivery of that message")
            self._log(key, st, pc.ack(st, h))

    def ack_many(self, group: str, topic: str, handles: list[str]) -> list[pc.PopError | None]:
        """Acknowledge several deliveries; per handle None (done) or the PopError refusing it."""
        out: list[pc.PopError | None] = []
        for h in handles:
            try:
                self.ack(group, topic, h)
                out.append(None)
            except pc.PopError as e:
                out.append(e)
        return out

    def change_invisible(self, group: str, topic: str, handle: str, invisible_ms: int, now: int) -> str:
        """Returns the new receipt handle."""
        h = self._handle(topic, handle)
        key = (group, topic, h.queue_id)
        with self._lock:
            st = self._live.get(key)
            if st is None:
                raise pc.PopError("INVALID_RECEIPT_HANDLE", f"group {group!r} holds no delivery of that message")
            ev, seq = pc.change_invisible(st, h, now, invisible_ms)
            self._log(key, st, ev)
        return pc.Handle(h.broker, topic, h.queue_id, h.offset, seq).encode()

    def forward_to_dead_letter(self, group: str, topic: str, handle: str, attempts: int) -> None:
        """The client gave up on a delivery (FIFO PushConsumer): move it to the DLQ now."""
        h = self._handle(topic, handle)
        key = (group, topic, h.queue_id)
        with self._lock:
            st = self._live.get(key)
            if st is None:
                raise pc.PopError("INVALID_RECEIPT_HANDLE", f"group {group!r} holds no delivery of that message")
            pc.ack(st, h)  # checks the handle is current
            self._dead_letter(key, st, [(h.offset, h.seq)], attempts)

    def group_settings(self, group: str, default_max_attempts: int) -> tuple[bool, int]:
        """(fifo, max delivery attempts) of a consumer group: its subscription-group config
        (`retry_max_times` + 1, attribute `fifo`), else (False, default_max_attempts)."""
        g = self.store.get_subscription_group(group) if group else None
        if g is None:
            return False, default_max_attempts
        attrs = g.get("attributes") or {}
        return str(attrs.get("fifo", "")).lower() == "true", max(1, int(g.get("retry_max_times", 16)) + 1)

    def inflight(self, group: str, topic: str) -> int:
        with self._lock:
            return sum(len(st.inflight) for (g, t, _q), st in self._live.items() if g == group and t == topic)

    # ---- helpers ----------------------------------------------------------------------------------

    def _handle(self, topic: str, text: str) -> pc.Handle:
        h = pc.Handle.decode(text)
        if h.topic != topic or h.broker != self.broker:
            raise pc.PopError("INVALID_RECEIPT_HANDLE", f"receipt handle is for topic {h.topic!r} on broker "
                              f"{h.broker!r}, not {topic!r} on {self.broker!r}")
        return h

    def _read(self, topic: str, qid: int, offset: int) -> Message | None:
        got = self.store.get_messages(topic, qid, offset, max_count=1)
        return got.messages[0] if got.messages and got.messages[0].queue_offset == offset else None

    def _dead_letter(self, key: tuple[str, str, int], st: pc.QueueState, items: list[tuple[int, int]],
                     attempts: int) -> None:
        group, topic, qid = key
        dlq = dlq_topic(group)
        if self.store.get_topic_config(dlq) is None:
            self.store.put_topic_config(dlq, {"read_queues": 1, "write_queues": 1, "perm": 6, "order": False,
                                              "attributes": {"dead_letter": "true"}})
        for off, _seq in items:
            m = self._read(topic, qid, off)
            if m is None:
                continue
            props = dict(m.properties)
            props[PROP_ORIGIN_TOPIC] = topic
            props[PROP_DLQ_ATTEMPTS] = str(attempts)
            props.pop(PROP_DELIVER_MS, None)
            self.store.put(Message(dlq, m.body, 0, m.tags, list(m.keys), props, m.msg_id,
                                   born_timestamp=m.born_timestamp, born_host=m.born_host,
                                   reconsume_times=attempts))
            log.info("dead-lettered %s/%d@%d (msg %s) to %s after %d attempts", topic, qid, off, m.msg_id, dlq,
                     attempts)
        self._log(key, st, pc.dead_letter_done(items))


def _int(v: str | None) -> int:
    try:
        return int(v) if v else 0
    except ValueError:
        return 0
