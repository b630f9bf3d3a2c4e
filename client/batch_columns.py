"""A list of `Message`s checked and turned into the columns of one batch record.

Owns the producer's per-batch work before encoding: the same type checks as `Message.check`, but
done a column at a time (one comprehension per field, a set of the types seen) so that a batch of
thousands of messages costs a few list passes instead of a Python call per message; the ids of
messages that have none (one compact range, written back to the messages so a re-send of the same
objects is deduplicated by the broker). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orbitmq.broker.store.batch_record import ID_DIGITS
from orbitmq.client.message import Message


@dataclass(slots=True)
class Columns:
    """What `batch_record.encode` takes; `tags`, `keys`, `properties` None when no message has any.
    `ids` lists every message's id when some came with their own (`id_prefix` "" then); otherwise
    the ids are `id_prefix` + 12 hex digits counted from `id_first`."""

    topic: str
    bodies: list[bytes]
    tags: list[str] | None
    keys: list[list[str]] | None
    properties: list[dict[str, str]] | None
    ids: list[str]
    id_prefix: str = ""
    id_first: int = 0
    compact: bool = False


_HEX2 = [f"{i:02X}" for i in range(256)]


def compact_ids(prefix: str, first: int, n: int) -> list[str]:
    """`[br.format_id(prefix, c) for c in range(first, first + n)]`, a few times faster: per block of
    256 counters the leading digits are formatted once and the last two come from a table."""
    out: list[str] = []
    c, end = first, first + n
    while c < end:
        lo = c & 0xFF
        hi = min(256, lo + end - c)
        head = f"{prefix}{c >> 8:0{ID_DIGITS - 2}X}"
        out += [head + t for t in _HEX2[lo:hi]]
        c += hi - lo
    return out


def batch_columns(msgs: list[Message], reserve: Callable[[int], tuple[str, int]],
                  next_id: Callable[[], str]) -> Columns:
    """Check `msgs` (TypeError as `Message.check` raises it, ValueError for an empty batch or mixed
    topics) and split them into columns. `reserve(n)` gives a compact id range (prefix, first) when
    no message has an id; `next_id()` one id for each message lacking one otherwise."""
    if not msgs:
        raise ValueError("a batch needs at least one message")
    if {type(m) for m in msgs} != {Message}:
        for m in msgs:
            if not isinstance(m, Message):
                raise TypeError(f"expected orbitmq.client.Message, got {type(m).__name__}")
    topic = msgs[0].topic
    if not isinstance(topic, str):
        raise TypeError(f"topic must be str, got {type(topic).__name__}")
    if len({m.topic for m in msgs}) != 1:
        raise ValueError("every message of a batch must have the same topic")
    bodies: list[Any] = [m.body for m in msgs]
    if {type(b) for b in bodies} != {bytes}:
        for i, b in enumerate(bodies):
            if not isinstance(b, bytes | bytearray | memoryview):
                raise TypeError(f"body must be bytes, got {type(b).__name__}")
            bodies[i] = bytes(b)
    if not [1 for m in msgs if m.tags != "" or m.keys or m.properties or m.msg_id]:
        # the common case, in one pass: no tags, keys, properties or ids (a tag that is not a str
        # is not "", so it goes the long way and is refused there)
        return _compact(msgs, reserve, Columns(topic, bodies, None, None, None, []))
    tags: list[str] | None = [m.tags for m in msgs]
    if {type(t) for t in tags} != {str}:
        for t in tags:
            if not isinstance(t, str):
                raise TypeError(f"tags must be str, got {type(t).__name__}")
    if not any(tags):
        tags = None
    keys: list[Any] | None = [m.keys for m in msgs]
    if any(keys):
        for m in msgs:
            if isinstance(m.keys, str):
                m.keys = [m.keys]
        keys = [m.keys for m in msgs]
    else:
        keys = None
    props: list[dict[str, str]] | None = [m.properties for m in msgs]
    if not any(props):
        props = None
    ids = [m.msg_id for m in msgs]
    if any(ids):
        if not all(ids):
            for i, m in enumerate(msgs):
                if not m.msg_id:
                    m.msg_id = ids[i] = next_id()
        return Columns(topic, bodies, tags, keys, props, ids)
    return _compact(msgs, reserve, Columns(topic, bodies, tags, keys, props, []))


def _compact(msgs: list[Message], reserve: Callable[[int], tuple[str, int]], c: Columns) -> Columns:
    """`c` with one compact id range for `msgs` (none has an id), written back to them."""
    c.id_prefix, c.id_first = reserve(len(msgs))
    c.ids = compact_ids(c.id_prefix, c.id_first, len(msgs))
    c.compact = True
    for m, mid in zip(msgs, c.ids, strict=True):
        m.msg_id = mid
    return c
