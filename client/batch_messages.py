"""Received messages out of batch records, decoded lazily: a pull answer carries whole batch records
as the broker stores them (`PullResponse.batches`), and a message is an index into one plus its
body (a batch's bodies are sliced in one pass when its messages are made); every other field is
read from the record on first use (properties parsed, tags and ids looked up).

Owns: `BatchMessage` (the same fields as the wire `common_pb2.Message` consumers get for
one-message records), `MessageRun` (some messages of one batch record, each made when it is read)
and `messages_of(response, ...)`, which picks the messages a pull asked for: queue offsets in
[requested offset, next_offset), tag among the subscribed ones. No I/O.

Nothing here makes a message per message of a pull: a pull answer becomes one `MessageRun` per batch
record, and a `BatchMessage` is made only when a consumer reads that message (and is freed when it
drops it). Messages made all at once and kept in a consumer's cache cost Python's garbage collector
more than making them did.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import Any

from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store.record import PROP_KEYS, PROP_UNIQ


class BatchMessage:
    """One message of a received batch record; fields are decoded on first access."""

    # made per received message, so it holds only the record, the index and the body (sliced when
    # the message is made: nearly every consumer reads it); everything else is read from the record
    # when asked (`_props_`, `_rt` exist once set)
    __slots__ = ("_i", "_props_", "_rt", "_v", "body", "broker_set")

    def __init__(self, view: br.BatchView, i: int, broker_set: str, body: bytes) -> None:
        self._v = view
        self._i = i
        self.broker_set = broker_set
        self.body = body

    @property
    def queue_offset(self) -> int:
        return self._v.base_queue_offset + self._i

    @property
    def reconsume_times(self) -> int:
        """Local redeliveries so far (the push consumer counts them here)."""
        try:
            return self._rt
        except AttributeError:
            return 0

    @reconsume_times.setter
    def reconsume_times(self, n: int) -> None:
        self._rt = n

    def _p(self) -> dict[str, str]:
        try:
            return self._props_
        except AttributeError:
            p = self._props_ = self._v.props(self._i)
            return p

    @property
    def topic(self) -> str:
        return self._v.topic

    @property
    def tags(self) -> str:
        return self._v.tag_of(self._i)

    @property
    def keys(self) -> list[str]:
        ks = self._p().get(PROP_KEYS, "") if self._v.props_len[self._i] else ""
        return ks.split() if ks else []

    @property
    def properties(self) -> dict[str, str]:
        if not self._v.props_len[self._i]:
            return {}
        return {k: v for k, v in self._p().items() if k not in (PROP_KEYS, PROP_UNIQ)}

    @property
    def msg_id(self) -> str:
        if self._v.flags & br.FLAG_IDS_EXPLICIT:
            return self._p().get(PROP_UNIQ, "")
        return br.format_id(self._v.id_prefix, self._v.id_first + self._i)

    @property
    def queue_id(self) -> int:
        return self._v.queue_id

    @property
    def physical_offset(self) -> int:
        return self._v.physical_offset

    @property
    def born_timestamp(self) -> int:
        return self._v.born_ts

    @property
    def born_host(self) -> str:
        return self._v.born_host

    @property
    def store_timestamp(self) -> int:
        return self._v.store_ts

    store_host = ""
    flags = 0
    sys_flag = 0

    def __eq__(self, other: object) -> bool:
        """The same message of the same received record (made twice when read twice)."""
        if type(other) is not BatchMessage:
            return NotImplemented
        return self._v is other._v and self._i == other._i

    def __hash__(self) -> int:
        return hash((id(self._v), self._i))

    def __repr__(self) -> str:
        return (f"BatchMessage(topic={self.topic!r}, queue_id={self.queue_id}, queue_offset={self.queue_offset}, "
                f"msg_id={self.msg_id!r}, tags={self.tags!r}, body={len(self.body)} bytes)")


class MessageRun(Sequence):
    """Messages of one batch record (indexes `idx`, increasing), made when read: iterating makes
    each `BatchMessage` as it is reached, `run[k]` makes message k, `run[a:b]` is a run again."""

    __slots__ = ("_bs", "_idx", "_v")

    def __init__(self, view: br.BatchView, idx: range | list[int], broker_set: str) -> None:
        self._v = view
        self._idx = idx
        self._bs = broker_set

    def __len__(self) -> int:
        return len(self._idx)

    def __iter__(self) -> Iterator[BatchMessage]:
        v, idx = self._v, self._idx
        if type(idx) is range and idx.step == 1:
            bodies: Any = v.bodies(idx.start, idx.stop)   # sliced in one pass
        else:
            bodies = map(v.body, idx)
        return map(BatchMessage, repeat(v), idx, repeat(self._bs), bodies)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return MessageRun(self._v, self._idx[k], self._bs)
        i = self._idx[k]
        return BatchMessage(self._v, i, self._bs, self._v.body(i))

    @property
    def first_offset(self) -> int:
        return self._v.base_queue_offset + self._idx[0]

    @property
    def last_offset(self) -> int:
        return self._v.base_queue_offset + self._idx[-1]

    def offsets(self) -> Sequence[int]:
        base, idx = self._v.base_queue_offset, self._idx
        if type(idx) is range:
            return range(base + idx.start, base + idx.stop, idx.step)
        return [base + i for i in idx]

    def below(self, offset: int) -> int:
        """How many of the run's messages have a queue offset under `offset`."""
        return bisect_left(self._idx, offset - self._v.base_queue_offset)

    def __repr__(self) -> str:
        return f"MessageRun({self._v.topic!r}, queue {self._v.queue_id}, {len(self)} messages)"


def messages_of(resp: Any, start: int, tags: set[str] | None, broker_set: str) -> list[Sequence[Any]]:
    """The messages of a pull answer, in queue order, as parts: a list of the one-message records
    as sent (`messages`), then a `MessageRun` of the asked-for messages of each batch record
    (offsets in [start, next_offset), tag in `tags` unless None). No message is made here."""
    parts: list[Sequence[Any]] = [list(resp.messages)] if resp.messages else []
    hi = resp.next_offset
    for raw in resp.batches:
        v = br.parse(raw, verify=False)  # the broker checked both CRCs when it read the record
        base = v.base_queue_offset
        a = max(start, base) - base
        b = min(hi, base + v.count) - base
        if a >= b:
            continue
        if tags is None or (v.uniform_tag() in tags):
            parts.append(MessageRun(v, range(a, b), broker_set))
        else:
            want = {j + 1 for j, t in enumerate(v.tags) if t in tags}
            if want:
                idx = v.tag_idx
                pick = [i for i in range(a, b) if idx[i] in want]
                if pick:
                    parts.append(MessageRun(v, pick, broker_set))
    if resp.messages and resp.batches:   # a log written in both formats: one list in queue order
        every = [m for p in parts for m in p]
        every.sort(key=lambda m: m.queue_offset)
        return [every]
    return parts
