"""The newest consume queue entries of each queue, kept in memory: a read cache of the index.

Owns: per (topic, queue id), the last `per_queue` entries the dispatcher committed, in queue
order and contiguous (each starts where the one before ends), so a consumer reading at the end of
its queue (the common case: a caught-up push or pop consumer, woken by the message it then reads)
finds its entry here instead of seeking the index database. The entries are the very values
written to the index in the same round, added after that write; anything that deletes or rewrites
index entries (truncation, expiry, a topic's deletion, an emptied store) drops what it covers
first, so an entry found here is one the index holds. A miss costs a dict lookup; readers then
seek the index as before. Plain Python, no locks: each queue's entries are a list that is only ever
appended to (an entry never changes; trimming to the last `per_queue` and starting over put a new
list in place), so a reader on another thread sees a consistent run of entries. Between trims a
queue holds up to twice `per_queue` entries, so a one-entry round costs an append, not a copy.

An entry is (base queue offset, physical offset, size, tag hash, message count, is a batch).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

Entry = tuple[int, int, int, int, int, bool]
Key = tuple[str, int]

PER_QUEUE = 64          # entries kept per queue
MAX_QUEUES = 50_000     # past this many queues the cache starts over (a memory bound, not a rule)


class CqTail:
    """See the module docstring."""

    def __init__(self, per_queue: int = PER_QUEUE, max_queues: int = MAX_QUEUES) -> None:
        if per_queue < 1 or max_queues < 1:
            raise ValueError("per_queue and max_queues must be >= 1")
        self.per_queue = per_queue
        self.max_queues = max_queues
        self._q: dict[Key, list[Entry]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._q)

    def add(self, fresh: Iterable[tuple[Key, Entry]]) -> None:
        """Entries a dispatch round committed to the index, in log order. An entry that does not
        continue its queue's tail (after a reset, or a queue seen first) starts the tail over."""
        q = self._q
        staged: dict[Key, list[Entry]] = {}    # the round's entries per queue (contiguous)
        for key, e in fresh:
            lst = staged.get(key)
            if lst is None:
                staged[key] = [e]
            else:
                if lst[-1][0] + lst[-1][4] != e[0]:
                    lst.clear()
                lst.append(e)
        if len(q) + len(staged) > self.max_queues:
            q.clear()
        n = self.per_queue
        for key, lst in staged.items():
            cur = q.get(key)
            if cur and cur[-1][0] + cur[-1][4] == lst[0][0]:    # continues the cached tail
                cur.extend(lst)
                if len(cur) > 2 * n:
                    q[key] = cur[-n:]     # a new list: readers holding the old one are unaffected
            else:
                q[key] = lst[-n:]

    def read(self, key: Key, queue_offset: int) -> list[Entry] | None:
        """The queue's cached entries from the one holding `queue_offset` on, or None when the
        cache does not hold that offset (then read the index)."""
        t = self._q.get(key)
        if t is None or queue_offset < t[0][0]:
            self.misses += 1
            return None
        i = bisect_right(t, queue_offset, key=_base) - 1
        e = t[i]
        if queue_offset >= e[0] + e[4]:
            self.misses += 1   # past the cached end (the reader then finds nothing newer anyway)
            return None
        self.hits += 1
        return t[i:]

    def clear(self) -> None:
        """Forget everything (the index lost or rewrote entries)."""
        self._q = {}

    def drop_topic(self, topic: str) -> None:
        """Forget a deleted topic's queues."""
        self._q = {k: v for k, v in self._q.items() if k[0] != topic}


def _base(e: Entry) -> int:
    return e[0]
