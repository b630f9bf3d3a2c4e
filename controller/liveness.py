"""The leader's liveness table (pure): which brokers are alive, from their heartbeats.

Owns: per broker the last heartbeat values (epoch, max offset, confirm offset, priority), when
it arrived, which session stream carried it, and whether that stream has closed. A broker is
alive while its last heartbeat is younger than `timeout_s`; a closed stream is only a hint: the
broker counts as dead once `lease_s` has passed since its last heartbeat (it may acknowledge
writes until then), and only if no newer session has carried a heartbeat since (RocketMQ
#10812); such a broker is never an election candidate (`closed`, `election_view`). A report
that goes backwards in (epoch, offset) keeps the higher position.

Never replicated and never read by followers: a new leader starts empty. Time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orbitmq.controller.election import Live

Key = tuple[tuple[str, str], int]   # ((cluster, broker set), broker id)


@dataclass
class Entry:
    live: Live
    last_seen: float        # monotonic receive time of the last heartbeat
    last_seen_ms: int       # wall clock of the same (for the history)
    session_gen: int = 0    # the newest session that carried its heartbeats (0: none)
    closed: bool = False    # that session has ended


class Liveness:
    def __init__(self, timeout_s: float, lease_s: float) -> None:
        if not 0 < lease_s <= timeout_s:
            raise ValueError("need 0 < lease_s <= timeout_s")
        self.timeout_s = timeout_s
        self.lease_s = lease_s
        self.entries: dict[Key, Entry] = {}

    def record(self, key: Key, live: Live, now: float, now_ms: int, gen: int = 0) -> None:
        """A heartbeat arrived (on session `gen`, or 0 for a unary call or a registration)."""
        prev = self.entries.get(key)
        if prev is not None and (prev.live.epoch, prev.live.max_offset) > (live.epoch, live.max_offset):
            live = Live(prev.live.epoch, prev.live.max_offset, max(prev.live.confirm_offset, live.confirm_offset),
                        live.priority)
        if gen == 0 and prev is not None and prev.session_gen and not prev.closed:
            gen = prev.session_gen   # a unary heartbeat does not replace a live session
        self.entries[key] = Entry(live, now, now_ms, gen, False)

    def session_closed(self, key: Key, gen: int) -> None:
        """Session `gen` of `key` ended; a hint only if it is the newest one."""
        e = self.entries.get(key)
        if e is not None and e.session_gen == gen:
            e.closed = True

    def alive(self, key: Key, now: float) -> bool:
        e = self.entries.get(key)
        if e is None:
            return False
        age = now - e.last_seen
        if age > self.timeout_s:
            return False
        return not (e.closed and age >= self.lease_s)

    def closed(self, key: Key) -> bool:
        """Its newest session stream has closed (and no heartbeat came since): never a candidate."""
        e = self.entries.get(key)
        return e is not None and e.closed

    def election_view(self, set_key: tuple[str, str], broker_ids: Iterable[int],
                      now: float) -> tuple[dict[int, Live], frozenset[int]]:
        """The election's inputs for one set: the live brokers with their last heartbeat values,
        and those of them whose newest session has closed."""
        alive: dict[int, Live] = {}
        closed = set()
        for b in broker_ids:
            k = (set_key, b)
            if self.alive(k, now):
                e = self.entries[k]
                alive[b] = e.live
                if e.closed:
                    closed.add(b)
        return alive, frozenset(closed)

    def get(self, key: Key) -> Entry | None:
        return self.entries.get(key)

    def forget(self, key: Key) -> None:
        self.entries.pop(key, None)

    def clear(self) -> None:
        self.entries.clear()
