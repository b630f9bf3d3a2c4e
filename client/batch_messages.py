"""Received messages out of batch records, decoded lazily: a pull answer carries whole batch records
as the broker stores them (`PullResponse.batches`), and a message is an index into one plus its
body (a batch's bodies are sliced in one pass when its messages are made); every other field is
read from the record on first use (properties parsed, tags and ids looked up).

Owns: `BatchMessage` (the same fields as the wire `common_pb2.Message` consumers get for
one-message records) and `messages_of(response, ...)`, which picks the messages a pull asked for:
queue offsets in [requested offset, next_offset), tag among the subscribed ones. No I/O.
"""

from __future__ import annotations

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

    def __repr__(self) -> str:
        return (f"BatchMessage(topic={self.topic!r}, queue_id={self.queue_id}, queue_offset={self.queue_offset}, "
                f"msg_id={self.msg_id!r}, tags={self.tags!r}, body={len(self.body)} bytes)")


def messages_of(resp: Any, start: int, tags: set[str] | None, broker_set: str) -> list[Any]:
    """The messages of a pull answer, in queue order: one-message records as sent (`messages`) plus
    the asked-for messages of every batch record (offsets in [start, next_offset), tag in `tags`
    unless None)."""
    out: list[Any] = list(resp.messages)
    hi = resp.next_offset
    for raw in resp.batches:
        v = br.parse(raw, verify=False)  # the broker checked both CRCs when it read the record
        base = v.base_queue_offset
        a = max(start, base) - base
        b = min(hi, base + v.count) - base
        if a >= b:
            continue
        if tags is None or (v.uniform_tag() in tags):
            out.extend([BatchMessage(v, i, broker_set, body) for i, body in zip(range(a, b), v.bodies(a, b), strict=True)])
        else:
            want = {j + 1 for j, t in enumerate(v.tags) if t in tags}
            if want:
                idx = v.tag_idx
                out.extend([BatchMessage(v, i, broker_set, v.body(i)) for i in range(a, b) if idx[i] in want])
    if resp.messages and resp.batches:
        out.sort(key=lambda m: m.queue_offset)
    return out
