"""Scheduled (DELAY) messages on one `MessageStore`: the timer index and its firing thread.

Owns: diverting a message with a future delivery time into the system topic `rmq_sys_wheel_timer`
(queue 0, real topic and queue in properties), indexing that topic into a `timer_core.Wheel`
(rebuilt from the topic after a restart, starting at the fired watermark), and a thread that, when
this store may write (master), stores due messages in their real topic and logs the firing as an
extension META record `x.timer` (folded by the dispatcher into index key `Xw`, so a follower that
becomes master, or a restarted broker, knows what fired). A crash between the store and the log
fires a message twice (at-least-once); nothing scheduled is lost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from orbitmq.broker import timer_core as tc
from orbitmq.broker.pop_service import PROP_DELIVER_MS
from orbitmq.broker.store import GetStatus, MessageStore
from orbitmq.broker.store.record import Message

log = logging.getLogger("orbitmq.broker.timer")

TIMER_TOPIC = "rmq_sys_wheel_timer"
OP_TIMER = "x.timer"
PROP_REAL_TOPIC = "REAL_TOPIC"
PROP_REAL_QID = "REAL_QID"
DB_KEY = b"Xw"


def divert(record: Message) -> Message:
    """Turn a message due later into its timer-topic record (in place; returns it)."""
    record.properties = {**record.properties, PROP_REAL_TOPIC: record.topic, PROP_REAL_QID: str(record.queue_id)}
    record.topic = TIMER_TOPIC
    record.queue_id = 0
    return record


class TimerService:
    """Create before `store.open()` (chains the dispatcher hook); `start()` after open, `stop()` before close."""

    def __init__(self, store: MessageStore, can_write: Callable[[], bool] = lambda: True,
                 epoch: Callable[[], int] = lambda: 0) -> None:
        self.store = store
        self.can_write = can_write
        self.epoch = epoch
        self._lock = threading.Lock()
        self._disp: tc.Fired | None = None
        self.fired = tc.Fired()
        self.wheel = tc.Wheel()
        self._loaded_epoch: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired_count = 0
        prev = store.ext_hook

        def hook(wb: Any, op: dict, off: int) -> None:
            if op.get("op") == OP_TIMER:
                self._on_dispatch(wb, op)
            elif prev is not None:
                prev(wb, op, off)

        store.ext_hook = hook

    # ---- persistence ------------------------------------------------------------------------------

    def _on_dispatch(self, wb: Any, op: dict) -> None:
        if self._disp is None:
            raw = self.store.db.get(DB_KEY)
            self._disp = tc.Fired() if raw is None else tc.Fired.from_json(json.loads(raw))
        tc.apply(self._disp, op["e"])
        wb.put(DB_KEY, json.dumps(self._disp.to_json()).encode())

    def load(self, timeout: float = 30.0) -> int:
        """Rebuild the wheel from the topic and the indexed fired state; returns how many are pending."""
        self.store.wait_dispatched(self.store.confirm_offset, timeout)
        with self._lock:
            raw = self.store.db.get(DB_KEY)
            self.fired = tc.Fired() if raw is None else tc.Fired.from_json(json.loads(raw))
            self.wheel = tc.Wheel()
            self.wheel.indexed_to = self.fired.watermark
            self._index_new()
            self._loaded_epoch = self.epoch()
            return len(self.wheel)

    def _log(self, event: dict) -> None:
        self.store.append_ext({"op": OP_TIMER, "e": event})
        tc.apply(self.fired, event)

    def ensure_topic(self) -> None:
        """Create the timer topic (lazily, when the first scheduled message comes)."""
        if self.store.get_topic_config(TIMER_TOPIC) is None:
            self.store.put_topic_config(TIMER_TOPIC, {"read_queues": 1, "write_queues": 1, "perm": 6, "order": False,
                                                      "attributes": {"system": "true"}})

    # ---- indexing and firing ----------------------------------------------------------------------

    def _index_new(self) -> None:
        """Add timer-topic messages not looked at yet (lock held)."""
        while True:
            got = self.store.get_messages(TIMER_TOPIC, 0, self.wheel.indexed_to, max_count=256)
            if got.status == GetStatus.OFFSET_MOVED:
                log.error("timer topic expired below %d (now %d): those scheduled messages are gone",
                          self.wheel.indexed_to, got.min_offset)
                self._log({"k": "skip", "to": got.min_offset})
                self.wheel.indexed_to = got.min_offset
                continue
            if got.status != GetStatus.FOUND:
                return
            for m in got.messages:
                if not self.fired.is_fired(m.queue_offset):
                    try:
                        at = int(m.properties.get(PROP_DELIVER_MS, "0"))
                    except ValueError:
                        at = 0
                    self.wheel.add(at, m.queue_offset, m.physical_offset)
            if got.next_offset <= self.wheel.indexed_to:
                return
            self.wheel.indexed_to = got.next_offset

    def fire_due(self, now: int) -> int:
        """Store every due message in its real topic (only while this store may write)."""
        if not self.can_write():
            return 0
        if self._loaded_epoch != self.epoch():  # became master (again): rebuild from the replicated log
            self.load()
        with self._lock:
            self._index_new()
            due = self.wheel.due(now)
            if not due:
                return 0
            fired = []
            for _at, q, phys in due:
                m = self.store.get_by_physical_offset(phys)
                if m is None or m.topic != TIMER_TOPIC:
                    fired.append(q)  # expired under us: nothing to deliver
                    continue
                props = dict(m.properties)
                topic = props.pop(PROP_REAL_TOPIC, "")
                try:
                    qid = int(props.pop(PROP_REAL_QID, "0"))
                except ValueError:
                    qid = 0
                if topic:
                    self.store.put(Message(topic, m.body, qid, m.tags, list(m.keys), props, m.msg_id,
                                           born_timestamp=m.born_timestamp, born_host=m.born_host))
                fired.append(q)
            self._log({"k": "fire", "q": fired})
            self.fired_count += len(fired)
            return len(fired)

    def _on_new(self, queues: Any) -> None:
        if (TIMER_TOPIC, 0) in queues:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = 0.5
            try:
                now = int(time.time() * 1000)
                self.fire_due(now)
                nxt = self.wheel.next_at()
                if nxt is not None:
                    wait = min(wait, max(0.005, (nxt - int(time.time() * 1000)) / 1000))
            except Exception:  # noqa: BLE001 - keep the timer alive; say why
                log.exception("timer round failed")
            self._wake.wait(wait)
            self._wake.clear()

    def start(self) -> None:
        self.store.add_dispatch_listener(self._on_new)
        self._thread = threading.Thread(target=self._run, name="orbitmq-timer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
