"""`Producer`: sends messages to the master of a broker set chosen from the topic's route.

Owns: queue selection (round robin over writable queues of every broker set, or a user selector),
sync sends, one-way sends, explicit batches, and `send_async`, which returns a
`concurrent.futures.Future[SendReceipt]` and groups messages per queue into one SendMessage of up
to `batch_max_messages` / `batch_max_bytes` or `linger_ms`; and the attempts of every send until
its deadline (`send_timeout_s`, whatever the brokers do): the retry rules are `send_policy.py`'s
(stay on the broker set that may hold a copy, which answers the retry with the original receipts;
re-read the route after errors that mean the master may have moved), and an attempt left
unanswered for `PROBE_S` re-reads the route and is abandoned for the set's new master. The msg_id
is kept across retries: it is what the broker deduplicates by.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import grpc

from orbitmq.broker.store import batch_record as br
from orbitmq.client import errors
from orbitmq.client.batch_columns import batch_columns
from orbitmq.client.batch_send import BatchSend
from orbitmq.client.batching import Batch, BatchAccumulator
from orbitmq.client.message import BatchReceipts, Message, MsgIdGenerator, SendReceipt
from orbitmq.client.routes import MessageQueue, RouteInfo, Selector, select_round_robin
from orbitmq.client.send_future import SendFuture, resolve
from orbitmq.client.send_policy import PROBE_S, Decision, Failure, decide, moved
from orbitmq.client.transport import Transport
from orbitmq.common.tls import TlsConfig
from orbitmq.protos import broker_pb2

log = logging.getLogger("orbitmq.client.producer")

STORED_KEY = "orbitmq-stored"  # "0" from the broker: the refused send was not written


class Producer:
    """Thread-safe producer; use as a context manager or call `close()`.

    selector(queues, message, arg) -> MessageQueue picks the queue (e.g. `select_by_hash` with a
    sharding key as `arg`; `message` is the Message sent, the first one of a batch); by default
    queues are taken in round robin. Every send ends within `send_timeout_s`; `retries=0` makes one
    attempt only, any other value retries failed attempts (see send_policy.py) until then.
    `protocol`: "auto" sends over a broker's framed port when its route announces one, "grpc"
    always uses gRPC (default: $ORBITMQ_CLIENT_PROTOCOL, else auto).
    """

    def __init__(self, namesrv: str | list[str], *, send_timeout_s: float = 3.0, retries: int = 2,
                 selector: Selector | None = None, route_refresh_s: float = 30.0,
                 batch_max_messages: int = 256, batch_max_bytes: int = 1 << 20, linger_ms: float = 5.0,
                 max_in_flight: int = 16, tls: TlsConfig | str | bool | None = None,
                 protocol: str | None = None, credentials: Any = None) -> None:
        """`tls`: TLS to brokers and name servers: a `TlsConfig`, a CA file path, False (plaintext)
        or None (the process default: $ORBITMQ_TLS_CA, $ORBITMQ_TLS_CERT, $ORBITMQ_TLS_KEY).
        `protocol`: "auto" (the framed protocol where a broker announces it) or "grpc".
        `credentials`: `Credentials(access_key, secret)` or a pair: every call is signed as that user."""
        if send_timeout_s <= 0 or retries < 0 or max_in_flight < 1:
            raise ValueError("need send_timeout_s > 0, retries >= 0, max_in_flight >= 1")
        self.transport = Transport(namesrv, route_refresh_s=route_refresh_s, rpc_timeout_s=send_timeout_s, tls=tls,
                                   protocol=protocol, credentials=credentials)
        self.send_timeout_s = send_timeout_s
        self.retries = retries
        self.selector = selector
        self._ids = MsgIdGenerator()
        self._rr = itertools.count()
        self._host = socket.gethostname()
        self._acc = BatchAccumulator(batch_max_messages, batch_max_bytes, linger_ms / 1000.0)
        self._cond = threading.Condition()
        self._fut_cond = threading.Condition()    # shared by every SendFuture of this producer
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._closed = False
        self._sender: threading.Thread | None = None
        self._retry: list[_Job] = []              # async jobs waiting for their next attempt (guarded by _cond)
        self._inflight: set[_Job] = set()          # async jobs with a call outstanding (guarded by _cond)
        self._releases = 0                         # in-flight slots released so far (guarded by _cond)
        self._blocked_at = -1                      # _releases when the sender last found no free slot
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

    def _validate_only(self, msg: Message) -> None:
        """_validate without assigning an id (a batch assigns its ids as one range)."""
        if not isinstance(msg, Message):
            raise TypeError(f"expected orbitmq.client.Message, got {type(msg).__name__}")
        if self._closed:
            raise errors.ClientClosedError("producer is closed")
        msg.check()

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

    def _batch_request(self, msgs: list[Message], born_ms: int) -> tuple[Any, list[str] | None]:
        """One send request carrying the messages as a batch record (a BatchSend: built once, re-sent
        as is by retries, never copied into a SendRequest on the framed protocol) and the messages'
        ids (batch_columns.py checks the messages and gives ids to those without). A batch over
        batch_record.MAX_RECORD_BYTES goes as one-message records (ids None)."""
        try:
            c = batch_columns(msgs, self._ids.reserve_range, self._ids.next)
        except ValueError as e:
            raise errors.BadRequestError(str(e)) from None
        try:
            meta, data = br.encode_parts(c.topic, c.bodies, tags=c.tags, keys=c.keys, properties=c.properties,
                                         msg_ids=None if c.compact else c.ids, id_prefix=c.id_prefix,
                                         id_first=c.id_first, born_ts=born_ms, born_host=self._host)
        except ValueError as e:
            raise errors.BadRequestError(f"cannot build the batch: {e}") from None
        if len(meta) + len(data) > br.MAX_RECORD_BYTES:
            # too big for one record (replication moves a record whole): one-message records, as before
            req = broker_pb2.SendRequest(topic=c.topic)
            for m in msgs:
                self._add_wire(m, req.messages, born_ms)
            return req, None
        return BatchSend(c.topic, meta, data), c.ids

    # ---- attempts (shared by sync and async sends) ---------------------------------------------------

    def _target(self, job: _Job, selector: Selector | None, arg: Any, first: Any) -> tuple[MessageQueue, str]:
        """Queue and master address for the job's next attempt (stays on `job.stay` while that set exists)."""
        if job.go_to is not None and job.mq is not None:
            addr, job.go_to = job.go_to, None
            return job.mq, addr
        if job.stay is not None:
            route = self._route(job.topic)
            if job.stay in route.masters or route.replicas.get(job.stay):
                queues = [q for q in route.write_queues if q.broker_set == job.stay]
                addr = route.masters.get(job.stay)
                if not addr or not queues:
                    self.transport.invalidate(job.topic)
                    raise errors.NoRouteError(f"broker set {job.stay!r} has no master now (the send may be "
                                              "stored there: waiting for its new master)")
                mq = job.mq if job.mq in queues else queues[0]
                return mq, addr
            job.stay = None  # the whole set is gone from the routes: nothing can answer a retry there
        elif job.mq is not None and job.attempts == 0:
            # an async batch's first attempt: the queue it was grouped for (a selector's choice)
            route = self._route(job.topic)
            addr = route.masters.get(job.mq.broker_set)
            if addr and job.mq in route.write_queues:
                return job.mq, addr
        if first is None:
            first = job.first if job.first is not None else job.req.messages[0]
        return self._pick(job.topic, first, selector, arg, job.avoid)

    def _failed(self, job: _Job, err: errors.OrbitError) -> Decision:
        """Record a failed attempt; what to do next (send_policy.decide)."""
        job.attempts += 1
        job.last_err = err
        f = Failure(err.code, err.retriable, getattr(err, "not_stored", False),
                    job.mq.broker_set if job.mq is not None and job.sent else None, job.addr,
                    getattr(err, "master_address", "") or "")
        d = decide(f, attempt=job.attempts, retries=0 if self._closed else self.retries,
                   time_left_s=job.deadline - time.monotonic(), topic_known=job.topic in self.transport.known,
                   stay_on=job.stay, hinted=job.hinted)
        job.stay = d.stay_on
        if d.go_to is not None and job.mq is not None:
            job.go_to, job.hinted = d.go_to, True
            self.transport.note_master(job.topic, job.mq.broker_set, d.go_to)
        if f.not_stored and f.broker_set is not None and job.stay is None:
            job.avoid.add(f.broker_set)  # refused before writing: another broker set may take it
        if d.go_to is None and (d.refresh_route or err.stale_route):
            self.transport.invalidate(job.topic)
        return d

    def _master_moved(self, job: _Job) -> bool:
        """An unanswered attempt: has the route moved the set's master elsewhere since it started?"""
        try:
            route = self.transport.route(job.topic, max_age=PROBE_S)
        except errors.OrbitError:
            return False
        return moved(job.addr, route.masters.get(job.mq.broker_set) if job.mq is not None else None)

    def _receipts(self, job: _Job, resp: Any) -> Sequence[SendReceipt]:
        if job.ids is not None:
            b = resp.batch
            if b.count != len(job.ids):
                raise errors.InternalError(f"broker answered {b.count} results for a batch of {len(job.ids)}",
                                           address=job.addr)
            q = job.mq
            bset = resp.broker_set or q.broker_set
            if b.queue_id != q.queue_id or bset != q.broker_set:
                q = MessageQueue(job.topic, bset, b.queue_id)
            return BatchReceipts(job.ids, q, b.base_queue_offset, b.physical_offset, resp.epoch, job.addr)
        pms = job.req.messages
        results = resp.results
        if len(results) == 1 == len(pms):    # a single send: its queue is (almost always) the one picked
            r = results[0]
            q = job.mq
            bset = resp.broker_set or q.broker_set
            if r.queue_id != q.queue_id or bset != q.broker_set:
                q = MessageQueue(job.topic, bset, r.queue_id)
            return [SendReceipt(r.msg_id or pms[0].msg_id, q, r.queue_offset, r.physical_offset, resp.epoch,
                                job.addr)]
        if len(results) != len(pms):
            raise errors.InternalError(f"broker answered {len(resp.results)} results for {len(pms)} messages",
                                       address=job.addr)
        bset = resp.broker_set or job.mq.broker_set
        queues: dict[int, MessageQueue] = {}
        out = []
        for r, pm in zip(resp.results, pms, strict=True):
            q = queues.get(r.queue_id)
            if q is None:
                q = queues[r.queue_id] = MessageQueue(job.topic, bset, r.queue_id)
            out.append(SendReceipt(r.msg_id or pm.msg_id, q, r.queue_offset, r.physical_offset, resp.epoch,
                                   job.addr))
        return out

    # ---- sync --------------------------------------------------------------------------------------

    def _attempt_sync(self, job: _Job, selector: Selector | None, arg: Any, first: Any) -> Sequence[SendReceipt]:
        job.sent = False
        mq, addr = self._target(job, selector, arg, first)
        job.mq, job.addr = mq, addr
        left = job.deadline - time.monotonic()
        if left <= 0:
            raise errors.RequestTimeoutError(f"send to {job.topic!r} not acknowledged within its timeout")
        job.req.queue_id = mq.queue_id
        call = self.transport.future(addr, "SendMessage", job.req, left)
        job.sent = True
        job.started = time.monotonic()
        try:
            while True:
                try:
                    return self._receipts(job, call.result(timeout=PROBE_S))
                except grpc.FutureTimeoutError:
                    if time.monotonic() >= job.deadline:
                        call.cancel()
                        raise errors.RequestTimeoutError("no answer within the send timeout", address=addr) from None
                    if self._master_moved(job):
                        call.cancel()
                        raise errors.UnavailableError(f"master of {mq.broker_set!r} moved while {addr} did not "
                                                      "answer", address=addr) from None
        except grpc.FutureCancelledError:
            raise errors.ClientClosedError("send cancelled", address=addr) from None
        except grpc.RpcError as e:
            raise _wire_error(e, addr) from None

    def _send_with_retry(self, topic: str, req: Any, selector: Selector | None, arg: Any,
                         timeout: float | None, first: Any = None, ids: list[str] | None = None) -> Sequence[SendReceipt]:
        job = _Job(topic, req, time.monotonic() + (timeout or self.send_timeout_s))
        job.ids = ids
        while True:
            try:
                return self._attempt_sync(job, selector, arg, first)
            except errors.OrbitError as e:
                d = self._failed(job, e)
                if not d.retry:
                    raise
                log.debug("send to %s failed (%s); retrying in %.2fs", topic, e, d.delay_s)
                time.sleep(d.delay_s)

    def send(self, msg: Message, *, selector: Selector | None = None, arg: Any = None,
             timeout: float | None = None) -> SendReceipt:
        """Send one message and wait for the broker's receipt (retrying on another broker set)."""
        req = broker_pb2.SendRequest(topic=msg.topic)
        self._prepare_into(msg, req.messages, int(time.time() * 1000))
        return self._send_with_retry(msg.topic, req, selector, arg, timeout, msg)[0]

    def send_batch(self, msgs: list[Message], *, selector: Selector | None = None, arg: Any = None,
                   timeout: float | None = None) -> Sequence[SendReceipt]:
        """Send messages of one topic as one request to one queue; receipts in the same order."""
        msgs, req, ids = self._batch_of(msgs, "send_batch")
        return self._send_with_retry(req.topic, req, selector, arg, timeout, msgs[0], ids)

    def _batch_of(self, msgs: list[Message], what: str) -> tuple[list[Message], Any, list[str] | None]:
        """The messages (as a list), their request and ids (`_batch_request`), after the checks
        every batch send makes first."""
        if self._closed:
            raise errors.ClientClosedError("producer is closed")
        if not isinstance(msgs, list):
            msgs = list(msgs)
        if not msgs:
            raise errors.BadRequestError(f"{what} needs at least one message")
        return (msgs, *self._batch_request(msgs, int(time.time() * 1000)))

    def send_batch_async(self, msgs: list[Message], *, selector: Selector | None = None, arg: Any = None,
                         callback: Callable[[Future], None] | None = None) -> Future:
        """Send messages of one topic as one request to one queue without waiting: returns a
        `concurrent.futures.Future` resolved with their receipts (in order, as `send_batch`
        returns them) or failed with an OrbitError within `send_timeout_s`.

        The batch record is built (and bad input refused) before this returns, so the messages may
        be changed or re-sent afterwards. Blocks only while `max_in_flight` requests are already
        outstanding. Retries behave as `send_async`'s (a retry picks its queue without the
        selector), so batches in flight to one queue may land out of order.
        """
        msgs, req, ids = self._batch_of(msgs, "send_batch_async")
        fut: Future = SendFuture(self._fut_cond)
        if callback is not None:
            fut.add_done_callback(callback)
        job = _Job(req.topic, req, time.monotonic() + self.send_timeout_s, futs=[fut])
        job.whole = True
        job.ids = ids
        job.first = msgs[0]
        try:
            job.mq, _ = self._pick(req.topic, msgs[0], selector, arg)   # the first attempt's queue
            failed = None
        except errors.OrbitError as e:
            failed = e            # (a selector's own exception reaches the caller, nothing queued)
        with self._cond:
            self._unresolved += 1
            self._ensure_sender()
        if failed is not None:
            self._attempt_failed(job, failed)    # no route this instant: retried until the deadline
        else:
            self._start(job, block=True)
        return fut

    def send_oneway(self, msg: Message, *, selector: Selector | None = None, arg: Any = None) -> None:
        """Send without waiting for (or retrying on) the result."""
        pm = self._prepare(msg)
        mq, addr = self._pick(msg.topic, pm, selector, arg)
        req = broker_pb2.SendRequest(topic=msg.topic, queue_id=mq.queue_id, messages=[pm], oneway=True)
        fut = self.transport.future(addr, "SendMessage", req, self.send_timeout_s)
        self._oneway.add(fut)
        fut.add_done_callback(self._oneway.discard)

    # ---- async + batching --------------------------------------------------------------------------

    def send_async(self, msg: Message, *, selector: Selector | None = None, arg: Any = None,
                   callback: Callable[[Future], None] | None = None) -> Future:
        """Queue one message; returns a `concurrent.futures.Future` resolved with its SendReceipt
        (or failed with an OrbitError) within `send_timeout_s`, whatever the brokers do.

        Messages are grouped per queue (sticky round robin without a selector) and sent as one
        request when the batch is full or after `linger_ms`; batches of one queue may land out of
        order. Blocks only while `max_in_flight` requests are already outstanding (at most until
        the send timeout of the batch it would start).
        """
        self._validate_only(msg)  # ids: one compact range per batch record (or the message's own)
        sticky = selector is None and self.selector is None
        fut: Future = SendFuture(self._fut_cond)
        if callback is not None:
            fut.add_done_callback(callback)
        born = int(time.time() * 1000)
        out: list[tuple[Batch, list[Message]]] = []
        # the route may have to be fetched: never while holding the lock the sender thread needs
        try:
            if sticky:
                cur = self._sticky.get(msg.topic)    # (one dict read: no lock needed; settled under it below)
                if cur is None:
                    cur = self._pick(msg.topic, msg, None, None)
            else:
                cur = self._pick(msg.topic, msg, selector, arg)
        except errors.OrbitError as e:
            # no route now (e.g. no master this instant): the message goes alone, retried until its deadline
            if not msg.msg_id:
                msg.msg_id = self._ids.next()
            req = broker_pb2.SendRequest(topic=msg.topic)
            self._add_wire(msg, req.messages, born)
            job = _Job(msg.topic, req, time.monotonic() + self.send_timeout_s, futs=[fut])
            with self._cond:
                self._unresolved += 1
                self._ensure_sender()
            self._attempt_failed(job, e)
            return fut
        with self._cond:
            if sticky:
                cur = self._sticky.setdefault(msg.topic, cur)
            mq, addr = cur
            self._ensure_sender()
            was_open = self._acc.is_open(mq)
            ready = self._acc.add(mq, fut, len(msg.body) + 64, time.monotonic())
            for b in ready:
                if b.items[-1] is not fut:     # the previous batch closed to make room
                    out.append((b, self._reqs.pop(mq)))
            pending = self._reqs.get(mq)
            if pending is None:
                pending = self._reqs[mq] = []
            pending.append(msg)
            self._unresolved += 1
            if ready and ready[-1].items[-1] is fut:
                out.append((ready[-1], self._reqs.pop(mq)))
            if ready and sticky:
                self._sticky.pop(msg.topic, None)
            if self._acc.is_open(mq) and (ready or not was_open):
                self._cond.notify()            # a new batch opened: the sender thread times its linger
        for b, msgs in out:      # (the batch record is built outside the lock)
            self._start(self._job_of(b, msgs), block=True)
        return fut

    def _ensure_sender(self) -> None:
        """Start the sender thread (caller holds _cond)."""
        if self._sender is None:
            self._sender = threading.Thread(target=self._sender_loop, name="orbitmq-sender", daemon=True)
            self._sender.start()

    def _job_of(self, b: Batch, msgs: list[Message]) -> _Job:
        """A closed batch as a send job (its messages as one batch record); its deadline is its
        first message's send timeout."""
        try:
            req, ids = self._batch_request(msgs, int(time.time() * 1000))
        except errors.OrbitError as e:
            job = _Job(b.key.topic, None, b.created + self.send_timeout_s, futs=b.items)
            job.last_err = e
            job.deadline = 0.0  # fails at once with last_err
            return job
        req.queue_id = b.key.queue_id
        job = _Job(b.key.topic, req, b.created + self.send_timeout_s, futs=b.items)
        job.mq = b.key
        job.ids = ids
        job.first = msgs[0]
        return job

    def _settle(self, job: _Job, receipts: Sequence[SendReceipt] | None = None,
                exc: BaseException | None = None) -> None:
        """Resolve the futures of a job once (receipts in order, the rest failed with `exc`)."""
        with self._cond:
            if job.done:
                return
            job.done = True
        futs = job.futs or []
        if receipts and job.whole:
            receipts = [receipts]    # one future for the whole batch
        n = resolve(self._fut_cond, futs, receipts) if receipts else 0
        if n < len(futs):
            err = exc or errors.InternalError(f"broker answered {n} results for {len(futs)} messages")
            for f in futs[n:]:
                if not f.done():       # (one the caller cancelled stays cancelled)
                    f.set_exception(err)
        with self._cond:
            self._unresolved -= len(futs)
            if self._unresolved <= 0:
                self._cond.notify_all()

    def _take(self, batches: list[Batch]) -> list[tuple[Batch, list[Message]]]:
        """Pair closed batches with their messages (caller holds _cond; `_job_of` makes each a job
        after the lock is released)."""
        out = []
        for b in batches:
            out.append((b, self._reqs.pop(b.key)))
            if self._sticky.get(b.key.topic, (None,))[0] == b.key:
                self._sticky.pop(b.key.topic, None)
        return out

    def flush(self, timeout: float = 30.0) -> None:
        """Send every open batch now and wait until every async send's future is resolved."""
        with self._cond:
            out = self._take(self._acc.drain())
        for b, msgs in out:
            self._start(self._job_of(b, msgs), block=True)
        with self._cond:
            if not self._cond.wait_for(lambda: self._unresolved <= 0, timeout):
                raise errors.RequestTimeoutError(f"{self._unresolved} async sends unresolved after {timeout}s")

    def _sender_loop(self) -> None:
        """Lingering batches, retries when due (and a slot is free), expired jobs, and unanswered
        attempts whose set's master moved (cancelled, so their retry goes to the new master)."""
        next_probe = 0.0
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                waits = [0.5]
                dl = self._acc.next_deadline()
                if dl is not None:
                    waits.append(dl - now)
                if self._retry:
                    waits.append(min(j.deadline for j in self._retry) - now)
                    if self._releases != self._blocked_at:  # (while no slot frees, only deadlines wake us)
                        waits.append(min(j.due for j in self._retry) - now)
                if self._inflight:
                    waits.append(next_probe - now)
                wait = max(0.0, min(waits))
                if wait > 0:
                    self._cond.wait(wait)
                    if self._closed:
                        return
                now = time.monotonic()
                closed = self._take(self._acc.due(now))
                due = [j for j in self._retry if j.due <= now or j.deadline <= now]
                if due:
                    self._retry = [j for j in self._retry if not (j.due <= now or j.deadline <= now)]
                probe = bool(self._inflight) and now >= next_probe
                inflight = list(self._inflight) if probe else []
                releases = self._releases
            waiting = []
            for job in [self._job_of(b, msgs) for b, msgs in closed] + due:
                if waiting or not self._start(job, block=False):
                    waiting.append(job)  # no free slot: the first release wakes us
            if waiting:
                with self._cond:
                    self._retry.extend(waiting)
                    self._blocked_at = releases
            if probe:
                next_probe = now + PROBE_S
                self._probe(inflight, now)

    def _probe(self, jobs: list[_Job], now: float) -> None:
        routes: dict[str, bool] = {}
        for job in jobs:
            if job.call is None or now - job.started < PROBE_S or job.mq is None:
                continue
            key = f"{job.topic}\x00{job.addr}"
            if key not in routes:
                routes[key] = self._master_moved(job)
            if routes[key]:
                job.moved = True
                job.call.cancel()

    def _start(self, job: _Job, block: bool) -> bool:
        """Start the job's next attempt, or fail it at its deadline. Without a free slot: `block`
        waits for one until the deadline, otherwise False is returned (nothing done)."""
        left = job.deadline - time.monotonic()
        if job.done:
            return True
        if left <= 0:
            self._settle(job, exc=job.last_err or errors.RequestTimeoutError(
                "not sent within the send timeout (too many requests in flight)"))
            return True
        got = self._in_flight.acquire(timeout=left) if block else self._in_flight.acquire(blocking=False)
        if not got:
            if block:
                self._settle(job, exc=job.last_err or errors.RequestTimeoutError(
                    "no free in-flight slot within the send timeout"))
                return True
            return False
        job.sent = False
        job.moved = False
        try:
            mq, addr = self._target(job, None, None, None)
            job.mq, job.addr = mq, addr
            job.req.queue_id = mq.queue_id
            left = job.deadline - time.monotonic()
            if left <= 0:
                raise errors.RequestTimeoutError("send timeout passed while finding the master")
            call = self.transport.future(addr, "SendMessage", job.req, left)
        except Exception as e:  # noqa: BLE001 - route errors, client closed
            self._in_flight.release()
            with self._cond:
                self._releases += 1
                self._cond.notify()
            err = e if isinstance(e, errors.OrbitError) else errors.ClientClosedError(str(e) or type(e).__name__)
            self._attempt_failed(job, err)
            return True
        job.sent = True
        job.started = time.monotonic()
        job.call = call
        with self._cond:
            self._inflight.add(job)
        call.add_done_callback(lambda c: self._on_done(job, c))
        return True

    def _on_done(self, job: _Job, call: Any) -> None:
        self._in_flight.release()
        with self._cond:
            self._inflight.discard(job)
            job.call = None
            self._releases += 1
            self._cond.notify()  # a slot is free: waiting jobs may start
        try:
            resp = call.result()
        except grpc.FutureCancelledError:
            err = (errors.UnavailableError(f"master of {job.mq.broker_set!r} moved while {job.addr} did not answer",
                                           address=job.addr) if job.moved and not self._closed
                   else errors.ClientClosedError("send cancelled", address=job.addr))
            self._attempt_failed(job, err)
            return
        except grpc.RpcError as e:
            self._attempt_failed(job, _wire_error(e, job.addr))
            return
        except Exception as e:  # noqa: BLE001
            self._attempt_failed(job, errors.ClientClosedError(str(e) or "cancelled"))
            return
        try:
            receipts = self._receipts(job, resp)
        except errors.OrbitError as e:
            self._settle(job, exc=e)
            return
        self._settle(job, receipts)

    def _attempt_failed(self, job: _Job, err: errors.OrbitError) -> None:
        if job.mq is not None:
            with self._cond:
                if self._sticky.get(job.topic, (None,))[0] == job.mq:
                    self._sticky.pop(job.topic, None)
        d = self._failed(job, err)
        if not d.retry:
            self._settle(job, exc=err)
            return
        with self._cond:
            if not self._closed:
                job.due = time.monotonic() + d.delay_s
                self._retry.append(job)
                self._cond.notify()
                return
        self._settle(job, exc=errors.ClientClosedError("producer is closed"))

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued and wait for it (up to `timeout`); then fail what is left with
        ClientClosedError, cancel what is in flight and close the channels. Never hangs."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        except errors.OrbitError as e:
            log.warning("closing with unfinished async sends: %s", e)
        with self._cond:
            self._closed = True
            waiting, self._retry = self._retry, []
            inflight = list(self._inflight)
            out = self._take(self._acc.drain())
            self._cond.notify_all()
        for job in waiting + out:
            self._settle(job, exc=errors.ClientClosedError("producer closed before the send finished"))
        for job in inflight:
            if job.call is not None:
                job.call.cancel()
        if self._sender is not None and self._sender is not threading.current_thread():
            self._sender.join(timeout=2.0)
        self.transport.close()


class _Job:
    """One send (a sync call, or an async batch) across its attempts."""

    __slots__ = ("addr", "attempts", "avoid", "call", "deadline", "done", "due", "first", "futs", "go_to",
                 "hinted", "ids", "last_err", "moved", "mq", "req", "sent", "started", "stay", "topic", "whole")

    def __init__(self, topic: str, req: Any, deadline: float, futs: list[Future] | None = None) -> None:
        self.topic = topic
        self.req = req
        self.deadline = deadline
        self.futs = futs
        self.mq: MessageQueue | None = None
        self.addr = ""
        self.avoid: set[str] = set()
        self.stay: str | None = None      # a previous attempt may have stored it there: retries stay
        self.attempts = 0
        self.last_err: errors.OrbitError | None = None
        self.sent = False
        self.started = 0.0
        self.call: Any = None
        self.moved = False
        self.done = False
        self.due = 0.0
        self.go_to: str | None = None     # a NOT_MASTER answer named the set's new master: go there next
        self.hinted = False
        self.ids: list[str] | None = None  # a batch record send: the ids of its messages, in order
        self.first: Any = None             # the first message (for a selector choosing a retry's queue)
        self.whole = False                 # send_batch_async: futs[0] gets the whole batch's receipts


def _wire_error(e: grpc.RpcError, addr: str) -> errors.OrbitError:
    """The OrbitError of a failed call, marked `not_stored` when the broker says it wrote nothing."""
    err = errors.from_rpc_error(e, addr)
    try:
        md = dict(e.trailing_metadata() or ())
    except Exception:  # noqa: BLE001 - a channel-level failure has no metadata
        md = {}
    err.not_stored = md.get(STORED_KEY) == "0"
    return err
