"""`Producer`: sends messages to the master of a broker set chosen from the topic's route.

Owns: queue selection (round robin over writable queues of every broker set, or a user selector),
sync sends with retries on another broker set (tenacity; only retriable errors; the msg_id is kept
across retries so a duplicate can be told from a retry), one-way sends, explicit batches, and
`send_async`, which returns a `concurrent.futures.Future[SendReceipt]` and groups messages per
queue into one SendMessage of up to `batch_max_messages` / `batch_max_bytes` or `linger_ms`.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from orbitmq.client import errors
from orbitmq.client.batching import Batch, BatchAccumulator
from orbitmq.client.message import Message, MsgIdGenerator, SendReceipt
from orbitmq.client.routes import MessageQueue, RouteInfo, Selector, select_round_robin
from orbitmq.client.transport import Transport
from orbitmq.protos import broker_pb2

log = logging.getLogger("orbitmq.client.producer")


def _retriable(e: BaseException) -> bool:
    return isinstance(e, errors.OrbitError) and e.retriable


class Producer:
    """Thread-safe producer; use as a context manager or call `close()`.

    selector(queues, message, arg) -> MessageQueue picks the queue (e.g. `select_by_hash` with a
    sharding key as `arg`; `message` is the Message sent, the first one of a batch); by default
    queues are taken in round robin.
    """

    def __init__(self, namesrv: str | list[str], *, send_timeout_s: float = 3.0, retries: int = 2,
                 selector: Selector | None = None, route_refresh_s: float = 30.0,
                 batch_max_messages: int = 256, batch_max_bytes: int = 1 << 20, linger_ms: float = 5.0,
                 max_in_flight: int = 16) -> None:
        if send_timeout_s <= 0 or retries < 0 or max_in_flight < 1:
            raise ValueError("need send_timeout_s > 0, retries >= 0, max_in_flight >= 1")
        self.transport = Transport(namesrv, route_refresh_s=route_refresh_s, rpc_timeout_s=send_timeout_s)
        self.send_timeout_s = send_timeout_s
        self.retries = retries
        self.selector = selector
        self._ids = MsgIdGenerator()
        self._rr = itertools.count()
        self._host = socket.gethostname()
        self._acc = BatchAccumulator(batch_max_messages, batch_max_bytes, linger_ms / 1000.0)
        self._cond = threading.Condition()
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._closed = False
        self._sender: threading.Thread | None = None
        self._retry_pool: ThreadPoolExecutor | None = None
        self._oneway: set[Any] = set()
        self._sticky: dict[str, tuple[MessageQueue, str]] = {}
        self._unresolved = 0                      # async sends not yet resolved (guarded by _cond)
        self._reqs: dict[MessageQueue, Any] = {}  # open batch -> its SendRequest (messages added in place)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- queue choice ------------------------------------------------------------------------------

    def _route(self, topic: str) -> RouteInfo:
        return self.transport.route(topic)

    def _pick(self, topic: str, msg: Any, selector: Selector | None, arg: Any,
              avoid: Iterable[str] = ()) -> tuple[MessageQueue, str]:
        route = self._route(topic)
        queues = route.write_queues
        if not queues:
            self.transport.invalidate(topic)
            raise errors.NoRouteError(f"topic {topic!r} has no writable queue on any broker set with a master")
        sel = selector or self.selector
        if sel is not None:
            mq = sel(queues, msg, arg)
        else:
            mq = select_round_robin(queues, next(self._rr), avoid)
        addr = route.masters.get(mq.broker_set)
        if not addr:
            self.transport.invalidate(topic)
            raise errors.NoRouteError(f"broker set {mq.broker_set!r} has no master")
        return mq, addr

    def _validate(self, msg: Message) -> None:
        """Type checks and the producer-assigned msg_id (kept across retries)."""
        if not isinstance(msg, Message):
            raise TypeError(f"expected orbitmq.client.Message, got {type(msg).__name__}")
        if self._closed:
            raise errors.ClientClosedError("producer is closed")
        msg.check()
        if not msg.msg_id:
            msg.msg_id = self._ids.next()

    def _prepare(self, msg: Message) -> Any:
        self._validate(msg)
        return msg.to_proto(int(time.time() * 1000), self._host)

    def _prepare_into(self, msg: Message, container: Any, born_ms: int) -> None:
        """Validate, then add the wire message straight into a request's messages (no copy)."""
        self._validate(msg)
        self._add_wire(msg, container, born_ms)

    def _add_wire(self, msg: Message, container: Any, born_ms: int) -> None:
        pm = container.add(topic=msg.topic, body=bytes(msg.body), tags=msg.tags, msg_id=msg.msg_id,
                           born_timestamp=born_ms, born_host=self._host)
        if msg.keys:
            pm.keys.extend(msg.keys)
        if msg.properties:
            pm.properties.update(msg.properties)

    # ---- sync --------------------------------------------------------------------------------------

    def _send_once(self, topic: str, req: Any, selector: Selector | None, arg: Any, avoid: set[str],
                   deadline: float, first: Any = None) -> list[SendReceipt]:
        pms = req.messages
        mq, addr = self._pick(topic, first if first is not None else pms[0], selector, arg, avoid)
        timeout = max(0.01, deadline - time.monotonic())
        req.queue_id = mq.queue_id
        try:
            resp = self.transport.broker(addr).SendMessage(req, timeout=timeout)
        except grpc.RpcError as e:
            err = errors.from_rpc_error(e, addr)
            if err.stale_route:
                self.transport.invalidate(topic)
            avoid.add(mq.broker_set)
            raise err from None
        bset = resp.broker_set or mq.broker_set
        if len(resp.results) != len(pms):
            raise errors.InternalError(f"broker answered {len(resp.results)} results for {len(pms)} messages",
                                       address=addr)
        q = MessageQueue(topic, bset, mq.queue_id)
        return [SendReceipt(r.msg_id or pm.msg_id, q if r.queue_id == q.queue_id else MessageQueue(topic, bset, r.queue_id),
                            r.queue_offset, r.physical_offset, resp.epoch, addr) for r, pm in zip(resp.results, pms, strict=True)]

    def _send_with_retry(self, topic: str, req: Any, selector: Selector | None, arg: Any,
                         timeout: float | None, first: Any = None) -> list[SendReceipt]:
        t = timeout or self.send_timeout_s
        deadline = time.monotonic() + t
        avoid: set[str] = set()
        try:
            return self._send_once(topic, req, selector, arg, avoid, deadline, first)   # fast path, no retry machinery
        except errors.OrbitError as e:
            if not e.retriable or self.retries == 0:
                raise
            log.debug("send to %s failed (%s); retrying on another broker set", topic, e)
        for attempt in Retrying(stop=stop_after_attempt(self.retries) | stop_after_delay(max(0.0, deadline - time.monotonic())),
                                wait=wait_exponential(multiplier=0.05, max=0.5),
                                retry=retry_if_exception(_retriable), reraise=True):
            with attempt:
                return self._send_once(topic, req, selector, arg, avoid, deadline, first)
        raise AssertionError("unreachable")

    def send(self, msg: Message, *, selector: Selector | None = None, arg: Any = None,
             timeout: float | None = None) -> SendReceipt:
        """Send one message and wait for the broker's receipt (retrying on another broker set)."""
        req = broker_pb2.SendRequest(topic=msg.topic)
        self._prepare_into(msg, req.messages, int(time.time() * 1000))
        return self._send_with_retry(msg.topic, req, selector, arg, timeout, msg)[0]

    def send_batch(self, msgs: list[Message], *, selector: Selector | None = None, arg: Any = None,
                   timeout: float | None = None) -> list[SendReceipt]:
        """Send messages of one topic as one request to one queue; receipts in the same order."""
        if not msgs:
            raise errors.BadRequestError("send_batch needs at least one message")
        topic = getattr(msgs[0], "topic", "")
        if any(getattr(m, "topic", topic) != topic for m in msgs):
            raise errors.BadRequestError("every message of a batch must have the same topic")
        req = broker_pb2.SendRequest(topic=topic)
        born = int(time.time() * 1000)
        for m in msgs:
            self._prepare_into(m, req.messages, born)
        return self._send_with_retry(topic, req, selector, arg, timeout, msgs[0])

    def send_oneway(self, msg: Message, *, selector: Selector | None = None, arg: Any = None) -> None:
        """Send without waiting for (or retrying on) the result."""
        pm = self._prepare(msg)
        mq, addr = self._pick(msg.topic, pm, selector, arg)
        req = broker_pb2.SendRequest(topic=msg.topic, queue_id=mq.queue_id, messages=[pm], oneway=True)
        fut = self.transport.broker(addr).SendMessage.future(req, timeout=self.send_timeout_s)
        self._oneway.add(fut)
        fut.add_done_callback(self._oneway.discard)

    # ---- async + batching --------------------------------------------------------------------------

    def send_async(self, msg: Message, *, selector: Selector | None = None, arg: Any = None,
                   callback: Callable[[Future], None] | None = None) -> Future:
        """Queue one message; returns a `concurrent.futures.Future` resolved with its SendReceipt
        (or failed with an OrbitError).

        Messages are grouped per queue (sticky round robin without a selector) and sent as one
        request when the batch is full or after `linger_ms`; batches of one queue may land out of
        order. Blocks only when `max_in_flight` requests are already outstanding.
        """
        self._validate(msg)
        sticky = selector is None and self.selector is None
        fut: Future = Future()
        if callback is not None:
            fut.add_done_callback(callback)
        born = int(time.time() * 1000)
        out: list[tuple[MessageQueue, list[Future], Any]] = []
        with self._cond:
            if sticky:
                # sticky round robin: fill one queue's batch, then move on (bigger batches than per message)
                cur = self._sticky.get(msg.topic)
                if cur is None:
                    cur = self._sticky[msg.topic] = self._pick(msg.topic, msg, None, None)
                mq, addr = cur
            else:
                mq, addr = self._pick(msg.topic, msg, selector, arg)
            if self._sender is None:
                self._sender = threading.Thread(target=self._sender_loop, name="orbitmq-sender", daemon=True)
                self._sender.start()
            was_open = self._acc.is_open(mq)
            ready = self._acc.add(mq, fut, len(msg.body) + 64, time.monotonic())
            for b in ready:
                if b.items[-1] is not fut:     # the previous batch closed to make room
                    out.append((mq, b.items, self._reqs.pop(mq)))
            req = self._reqs.get(mq)
            if req is None:
                req = self._reqs[mq] = broker_pb2.SendRequest(topic=mq.topic, queue_id=mq.queue_id)
            self._add_wire(msg, req.messages, born)
            self._unresolved += 1
            if ready and ready[-1].items[-1] is fut:
                out.append((mq, ready[-1].items, self._reqs.pop(mq)))
            if ready and sticky:
                self._sticky.pop(msg.topic, None)
            if self._acc.is_open(mq) and (ready or not was_open):
                self._cond.notify()            # a new batch opened: the sender thread times its linger
        for q, futs, r in out:
            self._dispatch(q, futs, r, addr)
        return fut

    def _settle(self, futs: list[Future], receipts: list[SendReceipt] | None = None,
                exc: BaseException | None = None) -> None:
        """Resolve the futures of a batch (receipts in order, the rest failed with `exc`)."""
        n = 0
        for r in receipts or ():
            futs[n].set_result(r)
            n += 1
        if n < len(futs):
            err = exc or errors.InternalError(f"broker answered {n} results for {len(futs)} messages")
            for f in futs[n:]:
                f.set_exception(err)
        with self._cond:
            self._unresolved -= len(futs)
            if self._unresolved <= 0:
                self._cond.notify_all()

    def _take(self, batches: list[Batch]) -> list[tuple[MessageQueue, list[Future], Any]]:
        """Pair closed batches with their requests (caller holds _cond)."""
        out = []
        for b in batches:
            out.append((b.key, b.items, self._reqs.pop(b.key)))
            if self._sticky.get(b.key.topic, (None,))[0] == b.key:
                self._sticky.pop(b.key.topic, None)
        return out

    def flush(self, timeout: float = 30.0) -> None:
        """Send every open batch now and wait until every async send's future is resolved."""
        with self._cond:
            out = self._take(self._acc.drain())
        for q, futs, r in out:
            self._dispatch(q, futs, r)
        with self._cond:
            if not self._cond.wait_for(lambda: self._unresolved <= 0, timeout):
                raise errors.RequestTimeoutError(f"{self._unresolved} async sends unresolved after {timeout}s")

    def _sender_loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                dl = self._acc.next_deadline()
                now = time.monotonic()
                if dl is None:
                    self._cond.wait(0.5)
                    continue
                if dl > now:
                    self._cond.wait(dl - now)
                    continue
                out = self._take(self._acc.due(now))
            for q, futs, r in out:
                self._dispatch(q, futs, r)

    def _dispatch(self, mq: MessageQueue, futs: list[Future], req: Any, addr: str | None = None) -> None:
        if addr is None:
            addr = self._route(mq.topic).masters.get(mq.broker_set)
        if not addr:
            self._retry_batch(mq, futs, req, errors.NoRouteError(f"broker set {mq.broker_set!r} has no master"))
            return
        self._in_flight.acquire()
        try:
            call = self.transport.broker(addr).SendMessage.future(req, timeout=self.send_timeout_s)
        except Exception as e:  # noqa: BLE001 - e.g. client closed
            self._in_flight.release()
            self._settle(futs, exc=e)
            return
        call.add_done_callback(lambda c: self._on_batch_done(c, mq, futs, req, addr))

    def _on_batch_done(self, call: Any, mq: MessageQueue, futs: list[Future], req: Any, addr: str) -> None:
        try:
            self._complete_batch(call, mq, futs, req, addr)
        finally:
            self._in_flight.release()

    def _complete_batch(self, call: Any, mq: MessageQueue, futs: list[Future], req: Any, addr: str) -> None:
        try:
            resp = call.result()
        except grpc.RpcError as e:
            err = errors.from_rpc_error(e, addr)
            self._sticky.pop(mq.topic, None)
            if err.stale_route:
                self.transport.invalidate(mq.topic)
            if err.retriable and self.retries > 0 and not self._closed:
                self._retry_batch(mq, futs, req, err)
            else:
                self._settle(futs, exc=err)
            return
        except Exception as e:  # noqa: BLE001 - cancelled on close
            self._settle(futs, exc=errors.ClientClosedError(str(e) or "cancelled"))
            return
        topic = mq.topic
        bset = resp.broker_set or mq.broker_set
        queues: dict[int, MessageQueue] = {}
        receipts = []
        for r, pm in zip(resp.results, req.messages, strict=False):
            q = queues.get(r.queue_id)
            if q is None:
                q = queues[r.queue_id] = MessageQueue(topic, bset, r.queue_id)
            receipts.append(SendReceipt(r.msg_id or pm.msg_id, q, r.queue_offset, r.physical_offset))
        self._settle(futs, receipts)

    def _retry_batch(self, mq: MessageQueue, futs: list[Future], req: Any, err: errors.OrbitError) -> None:
        if self._retry_pool is None:
            self._retry_pool = ThreadPoolExecutor(2, thread_name_prefix="orbitmq-retry")

        def again() -> None:
            try:
                receipts = self._send_with_retry(mq.topic, req, None, None, None)
            except Exception as e:  # noqa: BLE001
                self._settle(futs, exc=e)
                return
            self._settle(futs, receipts)

        try:
            self._retry_pool.submit(again)
        except RuntimeError:
            self._settle(futs, exc=err)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, wait for it (up to `timeout`), then close the channels."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        except errors.OrbitError as e:
            log.warning("closing with unfinished async sends: %s", e)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._retry_pool is not None:
            self._retry_pool.shutdown(wait=True)
        self.transport.close()
