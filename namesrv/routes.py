"""The name server's route table: a pure core (no sockets, threads or clocks; `now` is passed in).

Owns: which broker replicas are alive (by registration time, unregistration and keep-alive
streams), which is the master of each broker set (fencing stale masters by epoch), and the routes
derived from their topic configs. It must never do I/O or read the clock: the gRPC shell in
`namesrv/server.py` passes `time.monotonic()` in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

PERM_READ = 4
PERM_WRITE = 2


class StaleEpochError(Exception):
    """A master registered with an epoch below (or equal to, for another id) the set's master."""


class TopicNotFoundError(Exception):
    """No alive broker serves the topic and none accepts auto-creation."""


@dataclass(frozen=True)
class TopicInfo:
    """Queue counts and permission of one topic on one broker."""

    topic: str
    read_queues: int
    write_queues: int
    perm: int = PERM_READ | PERM_WRITE
    order: bool = False


@dataclass(frozen=True)
class Registration:
    """What one broker replica tells the name server about itself."""

    cluster: str
    broker_set: str
    broker_id: int
    address: str
    instance_id: str = ""
    ha_address: str = ""
    is_master: bool = False
    epoch: int = 0
    topics: tuple[TopicInfo, ...] = ()
    auto_create_topics: bool = False
    default_queues: int = 4
    expire_after_s: float = 0.0  # 0 = the table's default
    writable: bool = True
    remoting_address: str = ""   # framed protocol address, "" when the broker serves none


@dataclass
class _Entry:
    reg: Registration
    last_seen: float
    expire_after_s: float
    stream_token: int | None = None  # the newest keep-alive stream attached to this instance
    topics: dict[str, TopicInfo] = field(default_factory=dict)   # reg.topics by name


@dataclass(frozen=True)
class QueueInfo:
    broker_set: str
    read_queues: int
    write_queues: int
    perm: int


@dataclass(frozen=True)
class BrokerSetInfo:
    cluster: str
    broker_set: str
    replicas: dict[int, str]
    master_id: int  # -1: none
    master_address: str
    master_ha_address: str
    epoch: int
    remoting: dict[str, str] = field(default_factory=dict)  # replica gRPC address -> framed address


@dataclass(frozen=True)
class Route:
    topic: str
    queues: list[QueueInfo]
    broker_sets: list[BrokerSetInfo]
    auto_created: bool = False


@dataclass
class RouteTable:
    """Alive broker replicas keyed by (broker_set, broker_id); every query first drops expired ones."""

    default_expire_s: float = 120.0
    _entries: dict[tuple[str, int], _Entry] = field(default_factory=dict)
    _next_token: int = 1

    # ---- writes -------------------------------------------------------------------------------

    def register(self, reg: Registration, now: float) -> BrokerSetInfo:
        """Add or refresh a replica; returns its set's info (the master it should follow).

        Raises StaleEpochError when `reg` claims mastership with an epoch below the alive master's
        of its set (or the same epoch while another id is master); the stale entry is dropped so
        no client is routed to it.
        """
        self.expire(now)
        key = (reg.broker_set, reg.broker_id)
        if reg.is_master:
            cur = self._master_entry(reg.broker_set, exclude_id=reg.broker_id)
            if cur is not None and (reg.epoch < cur.reg.epoch or reg.epoch == cur.reg.epoch):
                self._entries.pop(key, None)
                raise StaleEpochError(
                    f"broker set {reg.broker_set}: broker {reg.broker_id} claims master at epoch "
                    f"{reg.epoch} but broker {cur.reg.broker_id} is master at epoch {cur.reg.epoch}")
            # A newer master demotes any other replica still registered as master (it is stale).
            if cur is not None:
                self._entries.pop((reg.broker_set, cur.reg.broker_id), None)
        # a broker may ask for a shorter expiry, never a longer one than this name server's
        expire = min(reg.expire_after_s, self.default_expire_s) if reg.expire_after_s > 0 else self.default_expire_s
        old = self._entries.get(key)
        token = old.stream_token if old is not None and old.reg.instance_id == reg.instance_id else None
        self._entries[key] = _Entry(reg=reg, last_seen=now, expire_after_s=expire, stream_token=token,
                                    topics={t.topic: t for t in reg.topics})
        return self._set_info(reg.broker_set)

    def register_delta(self, reg: Registration, deleted: tuple[str, ...], now: float) -> BrokerSetInfo | None:
        """Like `register`, but `reg.topics` holds only created/updated topics and `deleted` the
        removed ones, applied on top of this instance's current entry. Returns None (and changes
        nothing) when there is no alive entry of the same instance to apply them to: the broker must
        then register in full. The cost does not grow with the topics the broker already has."""
        self.expire(now)
        old = self._entries.get((reg.broker_set, reg.broker_id))
        if old is None or old.reg.instance_id != reg.instance_id:
            return None
        merged = dict(old.topics)
        merged.update((t.topic, t) for t in reg.topics)
        for name in deleted:
            merged.pop(name, None)
        return self.register(replace(reg, topics=tuple(merged.values())), now)

    def unregister(self, broker_set: str, broker_id: int, now: float, instance_id: str = "") -> bool:
        """Drop a replica at once (only the named instance's entry, if an instance is given)."""
        key = (broker_set, broker_id)
        e = self._entries.get(key)
        if e is None or (instance_id and e.reg.instance_id and e.reg.instance_id != instance_id):
            return False
        del self._entries[key]
        return True

    def stream_opened(self, broker_set: str, broker_id: int, instance_id: str) -> tuple[int, bool]:
        """A keep-alive stream from this instance began: returns (token, register_needed)."""
        token = self._next_token
        self._next_token += 1
        e = self._entries.get((broker_set, broker_id))
        if e is None or e.reg.instance_id != instance_id:
            return token, True
        e.stream_token = token
        return token, False

    def stream_attach(self, broker_set: str, broker_id: int, instance_id: str, token: int) -> bool:
        """A ping on an open stream: attach it if the entry exists; returns register_needed."""
        e = self._entries.get((broker_set, broker_id))
        if e is None or e.reg.instance_id != instance_id:
            return True
        if e.stream_token is None or e.stream_token < token:
            e.stream_token = token
        return False

    def stream_closed(self, broker_set: str, broker_id: int, instance_id: str, token: int) -> bool:
        """A keep-alive stream broke: drop the entry at once unless a newer instance or stream owns it."""
        key = (broker_set, broker_id)
        e = self._entries.get(key)
        if e is None or e.reg.instance_id != instance_id or e.stream_token != token:
            return False
        del self._entries[key]
        return True

    def expire(self, now: float) -> list[tuple[str, int]]:
        """Drop every replica silent for longer than its expiry; returns the dropped keys."""
        dead = [k for k, e in self._entries.items() if now - e.last_seen > e.expire_after_s]
        for k in dead:
            del self._entries[k]
        return dead

    # ---- queries ------------------------------------------------------------------------------

    def alive(self, now: float) -> list[Registration]:
        self.expire(now)
        return [e.reg for e in self._entries.values()]

    def route(self, topic: str, now: float) -> Route:
        """Queues per broker set for `topic`, or an auto-create route; raises TopicNotFoundError."""
        self.expire(now)
        queues: list[QueueInfo] = []
        sets: list[str] = []
        for bset in sorted({k[0] for k in self._entries}):
            src = self._topic_source(bset, topic)
            if src is None:
                continue
            reg, info = src
            perm = info.perm if reg.writable else info.perm & ~PERM_WRITE
            queues.append(QueueInfo(bset, info.read_queues, info.write_queues, perm))
            sets.append(bset)
        if queues:
            return Route(topic, queues, [self._set_info(s) for s in sets])
        for bset in sorted({k[0] for k in self._entries}):
            m = self._master_entry(bset)
            if m is not None and m.reg.auto_create_topics and m.reg.writable:
                n = max(1, m.reg.default_queues)
                queues.append(QueueInfo(bset, n, n, PERM_READ | PERM_WRITE))
                sets.append(bset)
        if queues:
            return Route(topic, queues, [self._set_info(s) for s in sets], auto_created=True)
        raise TopicNotFoundError(f"topic {topic!r} not found on any alive broker")

    def cluster_info(self, now: float) -> dict[str, list[BrokerSetInfo]]:
        self.expire(now)
        out: dict[str, list[BrokerSetInfo]] = {}
        for bset in sorted({k[0] for k in self._entries}):
            info = self._set_info(bset)
            out.setdefault(info.cluster, []).append(info)
        return out

    def topics(self, now: float, cluster: str = "") -> list[str]:
        self.expire(now)
        names: set[str] = set()
        for e in self._entries.values():
            if not cluster or e.reg.cluster == cluster:
                names.update(e.topics)
        return sorted(names)

    # ---- helpers ------------------------------------------------------------------------------

    def _set_entries(self, bset: str) -> list[_Entry]:
        return sorted((e for k, e in self._entries.items() if k[0] == bset), key=lambda e: e.reg.broker_id)

    def _master_entry(self, bset: str, exclude_id: int | None = None) -> _Entry | None:
        best: _Entry | None = None
        for e in self._set_entries(bset):
            if e.reg.is_master and e.reg.broker_id != exclude_id and (best is None or e.reg.epoch > best.reg.epoch):
                best = e
        return best

    def _topic_source(self, bset: str, topic: str) -> tuple[Registration, TopicInfo] | None:
        """The master's config of `topic` if it has one, else the lowest-id replica that does."""
        entries = self._set_entries(bset)
        m = self._master_entry(bset)
        ordered = ([m] if m is not None else []) + [e for e in entries if e is not m]
        for e in ordered:
            t = e.topics.get(topic)
            if t is not None:
                return e.reg, t
        return None

    def _set_info(self, bset: str) -> BrokerSetInfo:
        entries = self._set_entries(bset)
        m = self._master_entry(bset)
        cluster = (m or entries[0]).reg.cluster if entries else ""
        return BrokerSetInfo(
            cluster=cluster,
            broker_set=bset,
            replicas={e.reg.broker_id: e.reg.address for e in entries},
            master_id=m.reg.broker_id if m else -1,
            master_address=m.reg.address if m else "",
            master_ha_address=m.reg.ha_address if m else "",
            epoch=m.reg.epoch if m else max((e.reg.epoch for e in entries), default=0),
            remoting={e.reg.address: e.reg.remoting_address for e in entries if e.reg.remoting_address},
        )
