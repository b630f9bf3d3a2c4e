"""Deduplication of producer retries by message id (pure: no I/O, no clock).

Owns: the rule that decides whether a send is a retry of one already stored, and the small table
of recently appended batches the index does not cover yet. A send is a duplicate when every
message carries a producer-assigned msg_id and the log holds, from the record of the first id on,
consecutive messages of the same topic with the same ids in the same order, stored within the
dedup window. The answer to a duplicate is the original receipts; nothing is appended.

The state lives in the log (every record carries its msg_id) and is found through the msg-id
index the dispatcher builds on every replica; this table only covers what is not indexed yet: the
batches this master appended since the dispatch point, and (scanned once when a replica starts
writing as master) the replicated tail beyond it. So a follower that becomes master deduplicates
retries of sends its predecessor stored, with no extra state to replicate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """What a retry's answer needs of one stored message record."""

    physical_offset: int
    size: int
    queue_id: int
    queue_offset: int
    topic: str
    msg_id: str
    store_ms: int


class RecentBatches:
    """first msg_id -> physical offset of batches appended (or replicated) beyond the dispatch point."""

    def __init__(self) -> None:
        self._by_id: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()  # (physical offset, first id), in log order

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, first_id: str, physical_offset: int) -> None:
        if first_id:
            self._by_id[first_id] = physical_offset
            self._order.append((physical_offset, first_id))

    def get(self, first_id: str) -> int | None:
        return self._by_id.get(first_id)

    def prune(self, indexed_up_to: int) -> None:
        """Forget batches starting below `indexed_up_to`: the msg-id index has them."""
        order, by_id = self._order, self._by_id
        while order and order[0][0] < indexed_up_to:
            off, mid = order.popleft()
            if by_id.get(mid) == off:
                del by_id[mid]

    def cut(self, offset: int) -> None:
        """Truncation: forget batches at or beyond `offset` (they are gone from the log)."""
        order, by_id = self._order, self._by_id
        while order and order[-1][0] >= offset:
            off, mid = order.pop()
            if by_id.get(mid) == off:
                del by_id[mid]


def is_candidate(msg_ids: list[str]) -> bool:
    """Only sends whose every message has a producer-assigned id can be recognised as retries."""
    return bool(msg_ids) and all(msg_ids)


def match(stored: Iterable[StoredRecord], topic: str, msg_ids: list[str], oldest_ms: int) -> list[StoredRecord] | None:
    """The original records if `stored` (message records from the first id's record on, in log
    order) begins with `msg_ids` of `topic`, the first stored at or after `oldest_ms`; else None."""
    out: list[StoredRecord] = []
    it = iter(stored)
    for mid in msg_ids:
        r = next(it, None)
        if r is None or r.msg_id != mid or r.topic != topic:
            return None
        if not out and r.store_ms < oldest_ms:
            return None  # older than the window: a new send that reuses an id
        out.append(r)
    return out
