"""OrbitMQ's client in proxy mode: the same `Producer` / `PushConsumer` API, spoken through
`orbitmq proxy` with RocketMQ 5's gRPC protocol instead of to brokers directly.

    from orbitmq.client.proxy_mode import ProxyProducer, ProxyPushConsumer
    with ProxyProducer("127.0.0.1:8081") as p:
        p.send(Message("orders", b"hello", tags="new"))
    c = ProxyPushConsumer("billing", "127.0.0.1:8081"); c.subscribe("orders", "new")
    c.register_listener(lambda msgs: ConsumeStatus.SUCCESS); c.start(); ...; c.shutdown()

Owns: building protocol requests from `Message`, mapping Status codes to the client's typed
errors, and the push consumer's receive loop (long-polling ReceiveMessage, listener calls on a
thread pool, one AckMessage per consumed batch, ChangeInvisibleDuration for a redelivery later;
the server counts attempts and dead-letters). Listeners get `common_pb2.Message` objects as in
direct mode (`reconsume_times` = delivery attempt - 1). Selector/arg sends become FIFO messages
with the message group `str(arg)`. This module imports `apache.rocketmq.v2` generated code, so it
cannot share a process with the official `rocketmq` client package.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc

from orbitmq.client import errors
from orbitmq.client.consumer import ConsumeStatus, Listener
from orbitmq.client.message import Message, MsgIdGenerator, SendReceipt
from orbitmq.client.routes import MessageQueue
from orbitmq.common.tls_grpc import channel as tls_channel
from orbitmq.protos import common_pb2
from orbitmq.protos import rocketmq_v2_definition_pb2 as d
from orbitmq.protos import rocketmq_v2_service_pb2 as s
from orbitmq.protos import rocketmq_v2_service_pb2_grpc as sg

log = logging.getLogger("orbitmq.client.proxy")

_ERRORS: dict[str, type[errors.OrbitError]] = {
    "TOPIC_NOT_FOUND": errors.TopicNotFoundError, "ILLEGAL_TOPIC": errors.BadTopicNameError,
    "MESSAGE_BODY_EMPTY": errors.BodyEmptyError, "MESSAGE_BODY_TOO_LARGE": errors.BodyTooLargeError,
    "ILLEGAL_MESSAGE_TAG": errors.BadTagError, "ILLEGAL_MESSAGE_KEY": errors.BadKeyError,
    "FORBIDDEN": errors.ForbiddenError, "UNAUTHORIZED": errors.UnauthenticatedError,
    "HA_NOT_AVAILABLE": errors.NotMasterError,
    "PROXY_TIMEOUT": errors.UnavailableError, "CONSUMER_GROUP_NOT_FOUND": errors.GroupNotFoundError,
}


def check(status: d.Status) -> None:
    """Raise the client's typed error for a non-OK protocol Status."""
    if status.code in (d.OK, d.MESSAGE_NOT_FOUND):
        return
    name = d.Code.Name(status.code) if status.code in d.Code.values() else str(status.code)
    cls = _ERRORS.get(name, errors.BadRequestError if 40000 <= status.code < 50000 else errors.InternalError)
    raise cls(status.message, code=name)


class _Conn:
    def __init__(self, endpoint: str, namespace: str, timeout_s: float, tls: Any = None,
                 credentials: Any = None) -> None:
        from orbitmq.common.request_auth_grpc import signed_channel
        self.channel = signed_channel(tls_channel(endpoint, tls, options=[("grpc.max_receive_message_length", -1),
                                                                          ("grpc.max_send_message_length", -1)]),
                                      credentials)
        self.stub = sg.MessagingServiceStub(self.channel)
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.md = (("x-mq-client-id", f"orbitmq-{uuid.uuid4().hex[:16]}"), ("x-mq-language", "PYTHON"),
                   ("x-mq-protocol", "GRPC_V2"), ("x-mq-namespace", namespace))

    def res(self, name: str) -> d.Resource:
        return d.Resource(resource_namespace=self.namespace, name=name)

    def call(self, method: str, req: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self.stub, method)(req, metadata=self.md, timeout=timeout or self.timeout_s)
        except grpc.RpcError as e:
            raise errors.UnavailableError(f"proxy call {method} failed: {e.code().name} {e.details()}") from None

    def close(self) -> None:
        self.channel.close()


class ProxyProducer:
    """`Producer`'s send API through a proxy endpoint (host:port)."""

    def __init__(self, endpoint: str, *, send_timeout_s: float = 3.0, retries: int = 2, namespace: str = "",
                 tls: Any = None, credentials: Any = None) -> None:
        """`tls`: TLS to the proxy, as `Producer`'s (a TlsConfig, a CA file, False, None: $ORBITMQ_TLS_*).
        `credentials`: `Credentials(access_key, secret)` or a pair; every call is signed (proxy auth)."""
        self.conn = _Conn(endpoint, namespace, send_timeout_s, tls, credentials)
        self.retries = retries
        self._ids = MsgIdGenerator()
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> ProxyProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wire(self, msg: Message, arg: Any) -> d.Message:
        msg.check()
        m = d.Message(topic=self.conn.res(msg.topic), body=bytes(msg.body))
        sp = m.system_properties
        if msg.tags:
            sp.tag = msg.tags
        sp.keys.extend(msg.keys)
        for k, v in msg.properties.items():
            m.user_properties[k] = v
        if not msg.msg_id:
            msg.msg_id = self._ids.next()
        sp.message_id = msg.msg_id
        sp.born_timestamp.FromMilliseconds(int(time.time() * 1000))
        sp.body_encoding = d.IDENTITY
        if arg is not None:
            sp.message_type = d.FIFO
            sp.message_group = str(arg)
        else:
            sp.message_type = d.NORMAL
        return m

    def _send(self, msgs: list[Message], arg: Any, timeout: float | None) -> list[SendReceipt]:
        req = s.SendMessageRequest(messages=[self._wire(m, arg) for m in msgs])
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                r = self.conn.call("SendMessage", req, timeout)
                check(r.status)
                return [SendReceipt(e.message_id, MessageQueue(m.topic, "", -1), e.offset)
                        for m, e in zip(msgs, r.entries, strict=True)]
            except (errors.UnavailableError, errors.NotMasterError) as e:
                last = e
                time.sleep(min(0.5, 0.05 * 2 ** attempt))
        raise last  # type: ignore[misc]

    def send(self, msg: Message, *, selector: Any = None, arg: Any = None, timeout: float | None = None) -> SendReceipt:
        """Send one message and wait for the receipt (`arg` with a selector: FIFO, message group = str(arg))."""
        return self._send([msg], arg if selector is not None or arg is not None else None, timeout)[0]

    def send_batch(self, msgs: list[Message], *, selector: Any = None, arg: Any = None,
                   timeout: float | None = None) -> list[SendReceipt]:
        if not msgs:
            raise errors.BadRequestError("send_batch needs at least one message")
        return self._send(list(msgs), arg if selector is not None or arg is not None else None, timeout)

    def send_async(self, msg: Message, *, selector: Any = None, arg: Any = None, callback: Any = None) -> Future:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(8, thread_name_prefix="orbitmq-proxy-send")
        fut = self._pool.submit(self.send, msg, selector=selector, arg=arg)
        if callback is not None:
            fut.add_done_callback(callback)
        return fut

    def close(self, timeout: float = 10.0) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.conn.close()


def to_common(m: d.Message) -> common_pb2.Message:
    """A received protocol message as the `common_pb2.Message` direct-mode listeners get."""
    sp = m.system_properties
    out = common_pb2.Message(topic=m.topic.name, body=m.body, tags=sp.tag if sp.HasField("tag") else "",
                             keys=list(sp.keys), properties=dict(m.user_properties), msg_id=sp.message_id,
                             queue_id=sp.queue_id, queue_offset=sp.queue_offset, born_host=sp.born_host,
                             born_timestamp=sp.born_timestamp.ToMilliseconds(),
                             store_timestamp=sp.store_timestamp.ToMilliseconds(), store_host=sp.store_host,
                             reconsume_times=max(0, sp.delivery_attempt - 1))
    if sp.HasField("message_group"):
        out.properties["__SHARDINGKEY"] = sp.message_group
    return out


class ProxyPushConsumer:
    """`PushConsumer`'s API through a proxy endpoint: `subscribe`, `register_listener`, `start`, `shutdown`."""

    def __init__(self, group: str, endpoint: str, *, threads: int = 4, consume_batch: int = 1, batch: int = 32,
                 invisible_s: float = 30.0, reconsume_delay_s: float = 1.0, long_poll_s: float = 20.0,
                 namespace: str = "", tls: Any = None, credentials: Any = None) -> None:
        if threads < 1 or consume_batch < 1 or not 1 <= batch <= 64:
            raise ValueError("need threads >= 1, consume_batch >= 1, 1 <= batch <= 64")
        self.group = group
        self.conn = _Conn(endpoint, namespace, 10.0, tls, credentials)
        self.threads, self.consume_batch, self.batch = threads, consume_batch, batch
        self.invisible_s, self.reconsume_delay_s, self.long_poll_s = invisible_s, reconsume_delay_s, long_poll_s
        self._subs: dict[str, str] = {}
        self._listener: Listener | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.Semaphore(threads * 2)
        self._calls: set[Any] = set()
        self.consumed = 0

    def subscribe(self, topic: str, tags: str = "*") -> None:
        self._subs[topic] = tags or "*"

    def register_listener(self, listener: Listener) -> None:
        if not callable(listener):
            raise TypeError("listener must be callable")
        self._listener = listener

    def start(self) -> None:
        if self._listener is None:
            raise errors.BadRequestError("register_listener() before start()")
        if not self._subs:
            raise errors.BadRequestError("subscribe() before start()")
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=f"orbitmq-proxy-consume-{self.group}")
        for topic, tags in self._subs.items():
            r = self.conn.call("QueryRoute", s.QueryRouteRequest(topic=self.conn.res(topic)))
            check(r.status)
            queues = list(r.message_queues)
            t = threading.Thread(target=self._loop, args=(topic, tags, queues), daemon=True,
                                 name=f"orbitmq-proxy-receive-{topic}")
            t.start()
            self._threads.append(t)

    def _loop(self, topic: str, tags: str, queues: list[d.MessageQueue]) -> None:
        i = 0
        backoff = 0.0
        while not self._stop.is_set():
            mq = queues[i % len(queues)] if queues else d.MessageQueue(topic=self.conn.res(topic))
            i += 1
            req = s.ReceiveMessageRequest(group=self.conn.res(self.group), message_queue=mq, batch_size=self.batch,
                                          filter_expression=d.FilterExpression(type=d.TAG, expression=tags))
            req.invisible_duration.FromMilliseconds(int(self.invisible_s * 1000))
            req.long_polling_timeout.FromMilliseconds(int(self.long_poll_s * 1000))
            try:
                msgs = []
                call = self.conn.stub.ReceiveMessage(req, metadata=self.conn.md, timeout=self.long_poll_s + 10)
                self._calls.add(call)
                try:
                    for r in call:
                        if r.HasField("status"):
                            check(r.status)
                        elif r.HasField("message"):
                            msgs.append(r.message)
                finally:
                    self._calls.discard(call)
                backoff = 0.0
            except (grpc.RpcError, errors.OrbitError) as e:
                if self._stop.is_set():
                    return
                backoff = min(2.0, backoff * 2 or 0.1)
                log.debug("receive on %s failed: %s", topic, e)
                self._stop.wait(backoff)
                continue
            for k in range(0, len(msgs), self.consume_batch):
                self._slots.acquire()
                self._pool.submit(self._consume, topic, msgs[k:k + self.consume_batch])

    def _consume(self, topic: str, msgs: list[d.Message]) -> None:
        try:
            try:
                status = self._listener([to_common(m) for m in msgs])
            except Exception:  # noqa: BLE001 - a failing listener means "later"
                log.exception("listener failed on %d message(s) of %s", len(msgs), topic)
                status = ConsumeStatus.RECONSUME_LATER
            try:
                if status is None or status is ConsumeStatus.SUCCESS:
                    r = self.conn.call("AckMessage", s.AckMessageRequest(
                        group=self.conn.res(self.group), topic=self.conn.res(topic), entries=[
                            s.AckMessageEntry(message_id=m.system_properties.message_id,
                                              receipt_handle=m.system_properties.receipt_handle) for m in msgs]))
                    check(r.status)
                    self.consumed += len(msgs)
                else:
                    for m in msgs:  # the proxy redelivers after the delay, counting the attempt
                        req = s.ChangeInvisibleDurationRequest(group=self.conn.res(self.group),
                                                               topic=self.conn.res(topic),
                                                               receipt_handle=m.system_properties.receipt_handle,
                                                               message_id=m.system_properties.message_id)
                        req.invisible_duration.FromMilliseconds(int(self.reconsume_delay_s * 1000))
                        check(self.conn.call("ChangeInvisibleDuration", req).status)
            except errors.OrbitError as e:
                log.warning("ack/nack of %d message(s) of %s failed (they come back after the invisible time): %s",
                            len(msgs), topic, e)
        finally:
            self._slots.release()

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for call in list(self._calls):
            call.cancel()
        for t in self._threads:
            t.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        try:
            self.conn.call("NotifyClientTermination", s.NotifyClientTerminationRequest(group=self.conn.res(self.group)))
        except errors.OrbitError:
            pass
        self.conn.close()
