"""`Messages`: received messages of one queue or more, in the order they were pulled, as a
read-only sequence over parts (a list of messages, or a `MessageRun` of a batch record whose
messages are made when read).

Owns what consumers do with a pull's messages without touching each one: length, slicing,
dropping those under an offset, their queue offsets (a `range` when consecutive, which the offset
tracker takes in O(1)), and joining several into one (what `PullConsumer.poll` returns). No I/O.

Reading a message of a batch record makes its object then; two reads of `msgs[k]` give two equal
but distinct objects. `list(msgs)` makes them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

from orbitmq.client.batch_messages import MessageRun


def _first(p: Sequence[Any]) -> int:
    return p.first_offset if type(p) is MessageRun else p[0].queue_offset


def _last(p: Sequence[Any]) -> int:
    return p.last_offset if type(p) is MessageRun else p[-1].queue_offset


def _below(p: Sequence[Any], offset: int) -> int:
    if type(p) is MessageRun:
        return p.below(offset)
    return sum(1 for m in p if m.queue_offset < offset)   # queue order: those under come first


class Messages(Sequence):
    """Received messages, in pull order; see the module docstring."""

    __slots__ = ("_len", "_parts")

    def __init__(self, parts: Iterable[Sequence[Any]] = ()) -> None:
        self._parts = [p for p in parts if len(p)]
        self._len = sum(map(len, self._parts))

    @classmethod
    def join(cls, items: Iterable[Messages]) -> Messages:
        """One sequence of several, in the order given (no copy of any message)."""
        return cls(p for m in items for p in m._parts)

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[Any]:
        return chain.from_iterable(self._parts)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            start, stop, step = k.indices(self._len)
            if step != 1:
                return Messages([list(self)[k]])
            return self._cut(start, stop)
        if k < 0:
            k += self._len
        if not 0 <= k < self._len:
            raise IndexError("message index out of range")
        for p in self._parts:
            n = len(p)
            if k < n:
                return p[k]
            k -= n
        raise AssertionError("unreachable: the parts add up to _len")

    def _cut(self, start: int, stop: int) -> Messages:
        out = []
        pos = 0
        for p in self._parts:
            n = len(p)
            lo, hi = max(start - pos, 0), min(stop - pos, n)
            if lo < hi:
                out.append(p if lo == 0 and hi == n else p[lo:hi])
            pos += n
            if pos >= stop:
                break
        return Messages(out)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Messages, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Messages(len={self._len}, parts={len(self._parts)})"

    # ---- offsets: for the consumers' trackers -------------------------------------------------------

    @property
    def first_offset(self) -> int:
        """The queue offset of the first message (the sequence must not be empty)."""
        return _first(self._parts[0])

    def offsets(self) -> Sequence[int]:
        """Every message's queue offset, in order: a `range` when they are consecutive (each part
        is, and starts where the one before it ended; within one queue offsets increase)."""
        if not self._len:
            return ()
        lo = nxt = _first(self._parts[0])
        for p in self._parts:
            first, last = _first(p), _last(p)
            if first != nxt or last - first != len(p) - 1:
                break
            nxt = last + 1
        else:
            return range(lo, nxt)
        out: list[int] = []
        for p in self._parts:
            out.extend(p.offsets() if type(p) is MessageRun else [m.queue_offset for m in p])
        return out

    def from_offset(self, offset: int) -> Messages:
        """The messages at `offset` or above (of one queue: offsets increase)."""
        k = 0
        for p in self._parts:
            n = _below(p, offset)
            k += n
            if n < len(p):
                break
        return self._cut(k, self._len) if k else self
