"""Pop consumption rules (pure): what RocketMQ 5's SimpleConsumer and PushConsumer consume with.

Owns, per (group, topic, queue): which queue offsets are in flight (delivered, not yet acknowledged)
with their delivery attempt, the time they become visible again and the generation (`seq`) their
receipt handle names; the first offset never taken (`next`); the decisions of a receive (redeliver
what became visible again, dead-letter what ran out of attempts, take new messages, hold a delayed
message until its delivery time, keep FIFO order), of an ack, and of a change of invisible time.
Receipt handles are encoded and decoded here.

Every state change is an *event* (a small JSON-able dict) that `apply` folds into a state; the
shell writes each event as a META record in the commitlog before it answers, and a restart or a
follower rebuilds the same state by applying the same events in log order. `apply` is idempotent
for an in-order replay of a suffix. No clock, no I/O: `now` (milliseconds) is passed in.

FIFO: a FIFO group delivers the messages of one message group in offset order, the next only once
the previous is acknowledged or dead-lettered. A message whose group has an unfinished earlier one
is taken as *held* (in flight with attempt 0) and delivered as soon as its group is free; other
groups of the same queue are not blocked.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

HANDLE_VERSION = 1


class PopError(Exception):
    """A request the rules refuse; `code` is the protocol's Code name (e.g. INVALID_RECEIPT_HANDLE)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Handle:
    """What a receipt handle names: one delivery of one message to one group."""

    broker: str
    topic: str
    queue_id: int
    offset: int
    seq: int

    def encode(self) -> str:
        raw = json.dumps([HANDLE_VERSION, self.broker, self.topic, self.queue_id, self.offset, self.seq],
                         separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(text: str) -> Handle:
        """Parse a handle; PopError(INVALID_RECEIPT_HANDLE) if it is not one of ours."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            v, broker, topic, qid, off, seq = json.loads(raw)
            if v != HANDLE_VERSION or not all(isinstance(x, int) and not isinstance(x, bool) for x in (qid, off, seq)):
                raise ValueError("bad fields")
            if not isinstance(broker, str) or not isinstance(topic, str) or qid < 0 or off < 0 or seq < 1:
                raise ValueError("bad fields")
        except (ValueError, TypeError) as e:
            raise PopError("INVALID_RECEIPT_HANDLE", f"not a receipt handle issued by this server: {text[:64]!r}") from e
        return Handle(broker, topic, qid, off, seq)


@dataclass(slots=True)
class Inflight:
    attempt: int  # deliveries so far (0: a delayed message not delivered yet)
    visible_at: int  # ms: when it may be delivered (again)
    seq: int  # generation named by the current receipt handle
    mgroup: str = ""  # FIFO message group


@dataclass
class QueueState:
    next: int = 0  # first queue offset never taken
    seq: int = 0  # last handle generation issued
    inflight: dict[int, Inflight] = field(default_factory=dict)

    def ack_offset(self) -> int:
        """Every offset below this is done (acknowledged or dead-lettered)."""
        return min(self.inflight) if self.inflight else self.next

    def to_json(self) -> dict:
        return {"next": self.next, "seq": self.seq,
                "inflight": [[o, e.attempt, e.visible_at, e.seq, e.mgroup] for o, e in sorted(self.inflight.items())]}

    @staticmethod
    def from_json(d: dict) -> QueueState:
        return QueueState(d["next"], d["seq"], {o: Inflight(a, v, s, g) for o, a, v, s, g in d["inflight"]})


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored message at or after `next`, as the shell read it."""

    offset: int
    mgroup: str = ""
    deliver_at: int = 0  # ms; a DELAY message is held until then


@dataclass(frozen=True, slots=True)
class Delivery:
    offset: int
    attempt: int
    seq: int
    visible_at: int


@dataclass
class PopResult:
    deliver: list[Delivery]  # in offset order
    dead_letter: list[tuple[int, int]]  # (offset, seq) that ran out of attempts: move to the DLQ, then `done`
    event: dict | None  # the "take" event to log (None: nothing changed)
    wake_at: int | None  # earliest time something in flight becomes visible (for long polling)


def apply(state: QueueState, event: dict) -> QueueState:
    """Fold one event into the state (mutates and returns it)."""
    kind = event["k"]
    if kind == "take":
        state.next = max(state.next, event["next"])
        state.seq = max(state.seq, event["seq"])
        for off, attempt, visible_at, seq, mgroup in event["items"]:
            cur = state.inflight.get(off)
            if cur is None or seq >= cur.seq:
                state.inflight[off] = Inflight(attempt, visible_at, seq, mgroup)
        # offsets skipped between the old next and the new one that are not in flight are done
    elif kind == "done":
        for off, seq in event["items"]:
            cur = state.inflight.get(off)
            if cur is not None and cur.seq == seq:
                del state.inflight[off]
    elif kind == "reset":  # the queue was cut below `next` (expiry) or reset by an admin
        state.next = event["next"]
        state.inflight = {o: e for o, e in state.inflight.items() if o >= event["min"]}
    else:
        raise ValueError(f"unknown pop event {kind!r}")
    return state


def pop(state: QueueState, now: int, candidates: list[Candidate], batch: int, invisible_ms: int,
        max_attempts: int, fifo: bool = False, scanned_end: int | None = None) -> PopResult:
    """Decide one receive on one queue; `candidates` are the stored messages from `state.next` on, in order.

    Order: in-flight messages that became visible again (oldest offset first: redelivered with their
    attempt + 1, or dead-lettered once `max_attempts` deliveries failed), then new messages. The
    state is not changed: log `event` and `apply` it. `scanned_end`: the shell looked at every stored
    offset below it (messages a filter dropped are not candidates), so `next` may move up to it.
    """
    if batch < 1:
        raise PopError("BAD_REQUEST", "batch size must be at least 1")
    if invisible_ms < 1:
        raise PopError("ILLEGAL_INVISIBLE_TIME", "invisible duration must be positive")
    deliver: list[Delivery] = []
    dead: list[tuple[int, int]] = []
    items: list[list] = []
    seq = state.seq
    busy_groups: set[str] = set()
    for off in sorted(state.inflight):
        e = state.inflight[off]
        if fifo and e.mgroup in busy_groups:
            continue  # held: an earlier message of its group is not finished
        if e.visible_at > now:
            busy_groups.add(e.mgroup)
            continue
        if e.attempt >= max_attempts:
            dead.append((off, e.seq))
            busy_groups.add(e.mgroup)  # FIFO: the next one of its group waits until the move is logged
            continue
        if len(deliver) >= batch:
            busy_groups.add(e.mgroup)
            continue
        seq += 1
        d = Delivery(off, e.attempt + 1, seq, now + invisible_ms)
        deliver.append(d)
        items.append([off, d.attempt, d.visible_at, seq, e.mgroup])
        busy_groups.add(e.mgroup)
    nxt = state.next
    stopped = False
    for c in candidates:
        if c.offset < nxt:
            continue
        if c.offset != nxt:
            nxt = c.offset  # a gap (expired or filtered-out entries) is skipped
        if fifo and c.mgroup in busy_groups:
            seq += 1  # held (attempt 0, visible at once) until every earlier message of its group is finished
            items.append([c.offset, 0, 0, seq, c.mgroup])
            nxt = c.offset + 1
            continue
        if c.deliver_at > now:
            seq += 1
            items.append([c.offset, 0, c.deliver_at, seq, c.mgroup])
            if fifo:
                busy_groups.add(c.mgroup)
            nxt = c.offset + 1
            continue
        if len(deliver) >= batch:
            stopped = True
            break
        seq += 1
        d = Delivery(c.offset, 1, seq, now + invisible_ms)
        deliver.append(d)
        items.append([c.offset, 1, d.visible_at, seq, c.mgroup])
        busy_groups.add(c.mgroup)
        nxt = c.offset + 1
    if not stopped and scanned_end is not None and scanned_end > nxt:
        nxt = scanned_end
    event = None
    if items or nxt != state.next:
        event = {"k": "take", "next": nxt, "seq": seq, "items": items}
    after = [e.visible_at for e in state.inflight.values() if e.visible_at > now]
    after += [it[2] for it in items]
    return PopResult(deliver, dead, event, min(after) if after else None)


def ack(state: QueueState, h: Handle) -> dict:
    """The `done` event acknowledging the delivery `h` names; PopError if that delivery is not current."""
    _current(state, h)
    return {"k": "done", "items": [[h.offset, h.seq]]}


def change_invisible(state: QueueState, h: Handle, now: int, invisible_ms: int) -> tuple[dict, int]:
    """Event moving the delivery's visibility to now + invisible_ms under a new handle generation."""
    if invisible_ms < 0:
        raise PopError("ILLEGAL_INVISIBLE_TIME", "invisible duration must not be negative")
    e = _current(state, h)
    seq = state.seq + 1
    return {"k": "take", "next": state.next, "seq": seq,
            "items": [[h.offset, e.attempt, now + invisible_ms, seq, e.mgroup]]}, seq


def dead_letter_done(items: list[tuple[int, int]]) -> dict:
    """The `done` event for messages the shell moved to the dead-letter queue."""
    return {"k": "done", "items": [[o, s] for o, s in items]}


def _current(state: QueueState, h: Handle) -> Inflight:
    e = state.inflight.get(h.offset)
    if e is None:
        raise PopError("INVALID_RECEIPT_HANDLE",
                       f"receipt handle for offset {h.offset} of queue {h.queue_id}: already acknowledged or unknown")
    if e.seq != h.seq:
        raise PopError("INVALID_RECEIPT_HANDLE",
                       f"receipt handle for offset {h.offset} is stale (the message was redelivered or its "
                       "invisible time changed since)")
    if e.attempt == 0:
        raise PopError("INVALID_RECEIPT_HANDLE", "that message has not been delivered yet")
    return e
