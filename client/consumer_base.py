"""What push and lite-pull consumers share: subscriptions, heartbeats to every broker of the
route, rebalancing (clustering: `allocate_averagely` over the group's live members; broadcasting:
every queue), one long-polling pull thread per owned queue, offset tracking and periodic commits.

A subclass decides what happens to pulled messages (`_deliver`). Offsets are only committed up to
the lowest message not yet consumed (`OffsetTracker`), so delivery is at-least-once.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from orbitmq.client import errors
from orbitmq.client.allocate import allocate_averagely
from orbitmq.client.batch_messages import messages_of
from orbitmq.client.offset_store import LocalOffsetStore, RemoteOffsetStore
from orbitmq.client.offsets import OffsetTracker
from orbitmq.client.received import Messages
from orbitmq.client.routes import MessageQueue
from orbitmq.client.transport import Transport
from orbitmq.common.tls import TlsConfig
from orbitmq.protos import broker_pb2

log = logging.getLogger("orbitmq.client.consumer")


class MessageModel(enum.Enum):
    CLUSTERING = "clustering"
    BROADCASTING = "broadcasting"


@dataclass
class QueueState:
    """One owned queue: its progress and its pull thread."""

    mq: MessageQueue
    tracker: OffsetTracker | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    pull: Any = None              # the _Pull in flight
    last_committed: int = -1
    dropped: bool = False

    def ack(self, offsets: Sequence[int]) -> None:
        with self.lock:
            if self.tracker is not None:
                self.tracker.ack_many(offsets)


CHAIN_MAX = 256     # pulls issued back to back by reply callbacks before the pull thread looks again


class _Pull:
    """One pull in flight. Its reply is handled (decoded, tracked, handed to `_deliver`) by the
    callback, in the thread that read it (the connection's reader, or gRPC's), and that thread also
    issues the queue's next pull at once (`ConsumerBase._chain`), so no other thread wakes up per
    reply (the push consumer may even run its listener there, and when the queue is caught up and
    its listener quick, before that next pull: `_chain_later`). The queue's pull thread is woken
    only when a chain ends: an error, a full cache, the stop, or after CHAIN_MAX pulls (it then
    looks the route up again); it cancels the pull in flight when the queue stops."""

    __slots__ = ("addr", "call", "chain", "consumer", "error", "expr", "handled", "offset", "qs", "tags", "got",
                 "caught_up")

    def __init__(self, consumer: ConsumerBase, qs: QueueState, addr: str, offset: int, expr: str,
                 tags: set[str] | None, chain: int = 0) -> None:
        self.consumer = consumer
        self.qs = qs
        self.addr = addr
        self.offset = offset
        self.expr = expr
        self.tags = tags
        self.chain = chain
        self.call: Any = None
        self.error: BaseException | None = None
        self.handled = threading.Event()
        self.got = 0              # messages the reply delivered
        self.caught_up = False    # the reply reached the end of the queue

    def done(self, call: Any) -> None:
        try:
            if call.cancelled():
                return
            try:
                resp = call.result()
            except grpc.RpcError as e:
                self.error = errors.from_rpc_error(e, self.addr)
                return
            self.got = self.consumer._handle_pull(self.qs, resp, self.offset, self.tags)
            self.caught_up = resp.next_offset >= resp.max_offset
        except Exception as e:  # noqa: BLE001 - the pull thread reports it
            self.error = e
        finally:
            if self.error is not None or call.cancelled():
                self.end_chain()
            elif not self.consumer._chain_later(self):
                self.chain_on()

    def chain_on(self) -> None:
        """Issue the queue's next pull, or end the chain (the pull thread takes over)."""
        if not self.consumer._chain(self):
            self.end_chain()

    def end_chain(self) -> None:
        self.handled.set()
        self.qs.wake.set()


def offsets_of(msgs: list[Any]) -> Sequence[int]:
    """The queue offsets of a list of messages of one queue, in queue order: a `range` when they
    are consecutive (no tag filtered any out), which the tracker takes in O(1). (A `Messages`
    has its own `offsets()`.)"""
    if not msgs:
        return ()
    lo, hi = msgs[0].queue_offset, msgs[-1].queue_offset
    if hi - lo == len(msgs) - 1:
        return range(lo, hi + 1)
    return [m.queue_offset for m in msgs]


def tag_set(expr: str) -> set[str] | None:
    """A subscription's tag expression as a set ('*' or '' -> None: every tag)."""
    tags = {t.strip() for t in (expr or "").split("||")} - {""}
    return None if not tags or "*" in tags else tags


def make_client_id(instance_name: str) -> str:
    return f"{socket.gethostname()}@{os.getpid()}@{instance_name}@{uuid.uuid4().hex[:6]}"


class ConsumerBase:
    """Subscriptions, membership, rebalance, pulls and commits; see the module docstring."""

    def __init__(self, group: str, namesrv: str | list[str], *, model: MessageModel | str = MessageModel.CLUSTERING,
                 instance_name: str = "DEFAULT", pull_batch: int = 32, long_poll_ms: int = 2000,
                 rebalance_interval_s: float = 1.0, commit_interval_s: float = 1.0, consume_from: str = "first",
                 max_cached_per_queue: int = 1000, offset_file: str | Path | None = None,
                 route_refresh_s: float = 30.0, rpc_timeout_s: float = 5.0,
                 on_rebalance: Callable[[list[MessageQueue]], None] | None = None,
                 tls: TlsConfig | str | bool | None = None, protocol: str | None = None,
                 credentials: Any = None) -> None:
        if not isinstance(group, str) or not group:
            raise errors.BadRequestError("a consumer group name is required")
        if consume_from not in ("first", "last"):
            raise ValueError("consume_from must be 'first' or 'last'")
        if pull_batch < 1 or long_poll_ms < 0 or rebalance_interval_s <= 0 or commit_interval_s <= 0:
            raise ValueError("need pull_batch >= 1, long_poll_ms >= 0, intervals > 0")
        self.group = group
        self.model = MessageModel(model)
        self.transport = Transport(namesrv, route_refresh_s=route_refresh_s, rpc_timeout_s=rpc_timeout_s, tls=tls,
                                   protocol=protocol, credentials=credentials)
        self.client_id = make_client_id(instance_name)
        self.pull_batch = pull_batch
        self.long_poll_ms = long_poll_ms
        self.rebalance_interval_s = rebalance_interval_s
        self.commit_interval_s = commit_interval_s
        self.consume_from = consume_from
        self.max_cached_per_queue = max_cached_per_queue
        self.on_rebalance = on_rebalance
        if self.model is MessageModel.BROADCASTING:
            path = offset_file or Path.home() / ".orbitmq" / "offsets" / f"{group}@{instance_name}.json"
            self.offsets: RemoteOffsetStore | LocalOffsetStore = LocalOffsetStore(path)
        else:
            self.offsets = RemoteOffsetStore(self.transport, group)
        self.subscriptions: dict[str, str] = {}
        self._queues: dict[MessageQueue, QueueState] = {}
        self._qlock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._fixed: list[MessageQueue] | None = None   # assign() instead of subscribe()

    # ---- setup -------------------------------------------------------------------------------------

    def subscribe(self, topic: str, tags: str = "*") -> None:
        """Consume `topic` (tags "*" = all, or "a || b"); call before start()."""
        if not isinstance(topic, str) or not topic:
            raise errors.BadTopicNameError("topic name is empty")
        self.subscriptions[topic] = tags or "*"

    def start(self) -> None:
        if self._started:
            return
        if not self.subscriptions and self._fixed is None:
            raise errors.BadRequestError("subscribe to at least one topic before start()")
        for topic in self.subscriptions:
            self.transport.route(topic)   # fail fast: unknown topic / no name server
        self._heartbeat()   # a refused heartbeat (e.g. bad group name) fails start()
        self._started = True
        self._rebalance()
        for name, target in (("rebalance", self._rebalance_loop), ("commit", self._commit_loop)):
            t = threading.Thread(target=target, name=f"orbitmq-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def assignment(self) -> list[MessageQueue]:
        with self._qlock:
            return sorted(self._queues)

    # ---- membership + rebalance --------------------------------------------------------------------

    def _broker_addrs(self) -> list[str]:
        addrs: set[str] = set()
        for topic in self.subscriptions:
            try:
                addrs.update(self.transport.route(topic).masters.values())
            except errors.OrbitError as e:
                log.debug("route of %s unavailable: %s", topic, e)
        return sorted(addrs)

    def _heartbeat(self) -> None:
        if self._fixed is not None:
            return
        req = broker_pb2.ConsumerHeartbeatRequest(
            client_id=self.client_id, group=self.group,
            subscriptions=[broker_pb2.Subscription(topic=t, tag_expression=e) for t, e in self.subscriptions.items()],
            model=broker_pb2.BROADCASTING if self.model is MessageModel.BROADCASTING else broker_pb2.CLUSTERING)
        for addr in self._broker_addrs():
            try:
                self.transport.call_broker(addr, "ConsumerHeartbeat", req)
            except errors.BadRequestError:
                raise
            except errors.OrbitError as e:
                log.debug("heartbeat to %s failed: %s", addr, e)

    def _members(self, topic: str) -> list[str] | None:
        route = self.transport.route(topic)
        for addr in sorted(route.masters.values()):
            try:
                resp = self.transport.call_broker(addr, "GetConsumerList", broker_pb2.GetConsumerListRequest(group=self.group))
                return sorted(resp.client_ids)
            except errors.OrbitError as e:
                log.debug("consumer list from %s failed: %s", addr, e)
        return None

    def _target(self) -> set[MessageQueue] | None:
        if self._fixed is not None:
            return set(self._fixed)
        want: set[MessageQueue] = set()
        for topic in self.subscriptions:
            route = self.transport.route(topic)
            queues = route.read_queues
            if self.model is MessageModel.BROADCASTING:
                want.update(queues)
                continue
            members = self._members(topic)
            if members is None:
                return None   # no broker answered: keep what we have
            want.update(allocate_averagely(self.client_id, members, queues))
        return want

    def _rebalance(self) -> None:
        try:
            target = self._target()
        except errors.OrbitError as e:
            log.warning("rebalance skipped: %s", e)
            return
        if target is None:
            return
        with self._qlock:
            current = set(self._queues)
            removed = current - target
            added = target - current
            gone: list[QueueState] = []
            for mq in removed:
                qs = self._queues.pop(mq)
                qs.dropped = True
                qs.stop.set()
                qs.wake.set()
                gone.append(qs)
            for mq in sorted(added):
                qs = self._queues[mq] = QueueState(mq)
                qs.thread = threading.Thread(target=self._pull_loop, args=(qs,), name=f"orbitmq-pull-{mq.key()}",
                                             daemon=True)
                qs.thread.start()
        for qs in gone:   # hand the queue over at the consumed prefix (what is in flight will be redelivered)
            self._commit_queue(qs)
        if gone:
            self.offsets.flush()
        if removed or added:
            log.info("rebalance group=%s client=%s owns %d queues (+%d -%d)", self.group, self.client_id,
                     len(target), len(added), len(removed))
            if self.on_rebalance is not None:
                self.on_rebalance(sorted(target))

    def _rebalance_loop(self) -> None:
        while not self._stopping.wait(self.rebalance_interval_s):
            try:
                self._heartbeat()
                self._rebalance()
            except Exception:  # noqa: BLE001 - keep the loop alive
                log.exception("rebalance failed")

    # ---- pulling -----------------------------------------------------------------------------------

    def _start_offset(self, mq: MessageQueue) -> int:
        off = self.offsets.read(mq)
        if off is not None:
            return off
        addr = self.transport.route(mq.topic).read_address(mq.broker_set)
        if not addr:
            raise errors.NoRouteError(f"no replica of {mq.broker_set!r}")
        rng = self.transport.call_broker(addr, "GetOffsetRange",
                                         broker_pb2.GetOffsetRangeRequest(topic=mq.topic, queue_id=mq.queue_id))
        return int(rng.min_offset if self.consume_from == "first" else rng.max_offset)

    def _pull_loop(self, qs: QueueState) -> None:
        mq = qs.mq
        tags = self.subscriptions.get(mq.topic, "*")
        backoff = 0.0
        while not qs.stop.is_set() and not self._stopping.is_set():
            if backoff:
                qs.stop.wait(backoff)
                if qs.stop.is_set():
                    break
            try:
                if qs.tracker is None:
                    start = self._start_offset(mq)
                    with qs.lock:
                        qs.tracker = OffsetTracker(start)
                        qs.last_committed = start
                with qs.lock:
                    cached = qs.tracker.in_flight()
                    offset = qs.tracker.next_offset
                if cached >= self.max_cached_per_queue:
                    qs.stop.wait(0.005)
                    continue
                addr = self.transport.route(mq.topic).read_address(mq.broker_set)
                if not addr:
                    raise errors.NoRouteError(f"no replica of {mq.broker_set!r}")
                qs.wake.clear()
                pull = self._start_pull(qs, addr, offset, tags, tag_set(tags), 0)
                while True:          # until the chain of pulls ends (or the queue stops)
                    qs.wake.wait()
                    qs.wake.clear()
                    pull = qs.pull
                    if pull.handled.is_set():
                        break
                    if qs.stop.is_set() or self._stopping.is_set():
                        if pull.call is not None and pull.call.cancel():
                            return     # stopped while the pull was parked
                        pull.handled.wait(0.2)   # it ended meanwhile (a chain does not go on once stopped)
                        qs.wake.set()
                if pull.error is not None:
                    raise pull.error
                backoff = 0.0
            except errors.OrbitError as e:
                if qs.stop.is_set():
                    break
                if e.stale_route:
                    self.transport.invalidate(mq.topic)
                log.debug("pull %s failed: %s", mq.key(), e)
                backoff = min(1.0, backoff * 2 or 0.1)
            except Exception:  # noqa: BLE001 - keep the queue alive
                log.exception("pull loop of %s", mq.key())
                backoff = 1.0

    def _start_pull(self, qs: QueueState, addr: str, offset: int, expr: str, tags: set[str] | None,
                    chain: int) -> _Pull:
        """Issue one long-polling pull of `qs` from `offset`; `qs.pull` is it from now on."""
        mq = qs.mq
        req = broker_pb2.PullRequest(group=self.group, topic=mq.topic, queue_id=mq.queue_id, queue_offset=offset,
                                     max_messages=self.pull_batch, long_poll_ms=self.long_poll_ms,
                                     tag_expression=expr, commit_offset=-1, accept_batches=True)
        pull = qs.pull = _Pull(self, qs, addr, offset, expr, tags, chain)
        pull.call = call = self.transport.future(addr, "PullMessage", req, self.long_poll_ms / 1000 + 5)
        call.add_done_callback(pull.done)
        return pull

    def _chain(self, prev: _Pull) -> bool:
        """From a reply's callback: issue the queue's next pull now, unless the pull thread has to
        (stopping, cache full, CHAIN_MAX reached); False then."""
        qs = prev.qs
        if prev.chain >= CHAIN_MAX or qs.stop.is_set() or self._stopping.is_set() or qs.dropped:
            return False
        with qs.lock:
            if qs.tracker is None or qs.tracker.in_flight() >= self.max_cached_per_queue:
                return False
            offset = qs.tracker.next_offset
        try:
            self._start_pull(qs, prev.addr, offset, prev.expr, prev.tags, prev.chain + 1)
        except Exception:  # noqa: BLE001 - the pull thread starts over (and reports what fails then)
            log.debug("chained pull of %s not issued", qs.mq.key(), exc_info=True)
            qs.pull = prev      # the one the pull thread is told about (handled, by our caller)
            return False
        return True

    def _chain_later(self, pull: _Pull) -> bool:
        """From a reply's callback: True if the next pull was left to run after work this thread
        runs next (`pull.chain_on()` then issues it); False: issue it now."""
        return False

    def _handle_pull(self, qs: QueueState, resp: Any, offset: int = 0, tags: set[str] | None = None) -> int:
        """Track and deliver a pull's reply; returns how many messages it delivered."""
        st = resp.status
        if st == broker_pb2.PULL_FOUND and (resp.messages or resp.batches):
            msgs = Messages(messages_of(resp, offset, tags, qs.mq.broker_set))   # made when read
            with qs.lock:
                if qs.dropped:
                    return 0
                if msgs and msgs.first_offset < qs.tracker.next_offset:   # never deliver twice what this tracker handed out
                    msgs = msgs.from_offset(qs.tracker.next_offset)
                qs.tracker.add(msgs.offsets(), resp.next_offset)
            if msgs:
                self._deliver(qs, msgs)
            return len(msgs)
        elif st in (broker_pb2.PULL_OFFSET_MOVED, broker_pb2.PULL_OFFSET_ILLEGAL):
            new = resp.next_offset if st == broker_pb2.PULL_OFFSET_MOVED else resp.max_offset
            log.warning("offset of %s moved: restarting at %d", qs.mq.key(), new)
            with qs.lock:
                qs.tracker.reset(new)
        else:
            with qs.lock:
                qs.tracker.add([], resp.next_offset)
        return 0

    def _deliver(self, qs: QueueState, msgs: Messages) -> None:
        raise NotImplementedError

    # ---- commits -----------------------------------------------------------------------------------

    def _commit_queue(self, qs: QueueState) -> None:
        with qs.lock:
            if qs.tracker is None:
                return
            off = qs.tracker.committable()
        if off == qs.last_committed:
            return
        try:
            self.offsets.commit(qs.mq, off)
            qs.last_committed = off
        except errors.OrbitError as e:
            if e.stale_route:
                self.transport.invalidate(qs.mq.topic)
            log.debug("commit of %s failed: %s", qs.mq.key(), e)

    def commit_all(self, extra: list[QueueState] | None = None) -> None:
        """Commit every owned queue's consumed prefix now."""
        with self._qlock:
            states = list(self._queues.values())
        for qs in states + (extra or []):
            self._commit_queue(qs)
        self.offsets.flush()

    def _commit_loop(self) -> None:
        while not self._stopping.wait(self.commit_interval_s):
            try:
                self.commit_all()
            except Exception:  # noqa: BLE001
                log.exception("offset commit failed")

    # ---- shutdown ----------------------------------------------------------------------------------

    def _stop_pulling(self) -> list[QueueState]:
        self._stopping.set()
        with self._qlock:
            states = list(self._queues.values())
        for qs in states:
            qs.stop.set()
            qs.wake.set()
        for qs in states:
            if qs.thread is not None:
                qs.thread.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)
        return states

    def _unregister(self) -> None:
        if self._fixed is not None:
            return
        for addr in self._broker_addrs():
            try:
                self.transport.call_broker(addr, "UnregisterConsumer", broker_pb2.UnregisterConsumerRequest(
                    client_id=self.client_id, group=self.group), timeout=2)
            except errors.OrbitError as e:
                log.debug("unregister at %s failed: %s", addr, e)
