"""`apache.rocketmq.v2.MessagingService`: what RocketMQ 5 clients call, served over a backend.

Owns: request checks (client id metadata, resource names, filter, durations), the answers'
shapes (routes and assignments pointing at this proxy, the settings handshake on Telemetry, the
receive stream: status, messages, delivery timestamp), long polling, and turning every error
into a `Status` with the most specific `Code` (never a crashed call). Storage and pop rules live
in the backend (`LocalBackend`: embedded store).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc

from orbitmq.protos import rocketmq_v2_definition_pb2 as d
from orbitmq.protos import rocketmq_v2_service_pb2 as s
from orbitmq.protos import rocketmq_v2_service_pb2_grpc as sg
from orbitmq.proxy import convert
from orbitmq.proxy.config import ProxyConfig
from orbitmq.proxy.errors import ProxyError
from orbitmq.proxy.sessions import Sessions

log = logging.getLogger("orbitmq.proxy.service")

ALL_TYPES = [d.NORMAL, d.FIFO, d.DELAY, d.TRANSACTION]
MIN_INVISIBLE_MS = 1000
MAX_INVISIBLE_MS = 12 * 3600 * 1000
MAX_BATCH = 64
SESSION_IDLE_S = 120.0  # a client without a Telemetry stream and silent this long is forgotten


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dur_ms(x: Any) -> int:
    return x.seconds * 1000 + x.nanos // 1_000_000


def _status(code: str = "OK", message: str = "OK") -> d.Status:
    try:
        return d.Status(code=d.Code.Value(code), message=message)
    except ValueError:  # a broker error name with no protocol equivalent
        return d.Status(code=d.INTERNAL_ERROR, message=f"{code}: {message}")


_OK = d.Status(code=d.OK, message="OK")  # copied into answers, never changed


def _meta(context: Any) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ())}


def _client_id(context: Any) -> str:
    cid = _meta(context).get("x-mq-client-id", "")
    if not cid:
        raise ProxyError("CLIENT_ID_REQUIRED", "the x-mq-client-id metadata is missing")
    return cid


def _namespace(context: Any, res: d.Resource) -> str:
    return res.resource_namespace or _meta(context).get("x-mq-namespace", "")


def _tags(f: d.FilterExpression) -> set[str] | None:
    if f.type == d.SQL:
        raise ProxyError("ILLEGAL_FILTER_EXPRESSION", "SQL92 filters are not supported; use a TAG expression")
    expr = (f.expression or "*").strip()
    if expr in ("", "*"):
        return None
    tags = {t.strip() for t in expr.split("||") if t.strip()}
    if not tags:
        raise ProxyError("ILLEGAL_FILTER_EXPRESSION", f"bad tag expression {f.expression!r}")
    return tags


class MessagingService(sg.MessagingServiceServicer):
    def __init__(self, config: ProxyConfig, backend: Any) -> None:
        self.config = config
        self.backend = backend
        self.sessions = Sessions()
        host, _, port = (config.advertise or config.listen).rpartition(":")
        scheme = d.IPv4 if host.replace(".", "").isdigit() else d.DOMAIN_NAME
        self.endpoints = d.Endpoints(scheme=scheme, addresses=[d.Address(host=host, port=int(port))])
        self.stats = {"sent": 0, "received": 0, "acked": 0}

    # ---- helpers ----------------------------------------------------------------------------------

    def _queue(self, topic_res: d.Resource, broker: str, qid: int) -> d.MessageQueue:
        return d.MessageQueue(topic=topic_res, id=qid, permission=d.READ_WRITE,
                              broker=d.Broker(name=broker, id=0, endpoints=self.endpoints),
                              accept_message_types=ALL_TYPES)

    def _topic(self, context: Any, res: d.Resource) -> str:
        if not res.resource_namespace:
            ns = _meta(context).get("x-mq-namespace", "")
            if ns:
                res = d.Resource(resource_namespace=ns, name=res.name)
        return convert.internal_name(res, "topic")

    def _group(self, context: Any, res: d.Resource) -> str:
        if not res.name:
            raise ProxyError("ILLEGAL_CONSUMER_GROUP", "consumer group is missing")
        if not res.resource_namespace:
            ns = _meta(context).get("x-mq-namespace", "")
            if ns:
                res = d.Resource(resource_namespace=ns, name=res.name)
        return convert.internal_name(res, "group")

    @staticmethod
    def _fail(e: Exception, what: str) -> d.Status:
        if isinstance(e, ProxyError):
            return _status(e.code, e.message)
        log.exception("%s failed", what)
        return _status("INTERNAL_ERROR", f"{what} failed: {type(e).__name__}: {e}")

    # ---- background: transaction checks ----------------------------------------------------------

    def background(self) -> list:
        """Coroutines the server runs while serving."""
        return [self._check_transactions_forever(), self._expire_sessions_forever()]

    async def _expire_sessions_forever(self) -> None:
        while True:
            await asyncio.sleep(30)
            n = self.sessions.expire(SESSION_IDLE_S)
            if n:
                log.info("forgot %d idle clients", n)

    async def _check_transactions_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tx_check_interval_s)
            try:
                await self.check_transactions()
            except Exception:  # noqa: BLE001 - keep checking
                log.exception("transaction check round failed")

    async def check_transactions(self) -> int:
        """Send a RecoverOrphanedTransactionCommand for every orphan due, to a producer of its topic."""
        sent = 0
        for tx_id, m in await self.backend.due_transactions(_now_ms()):
            producers = self.sessions.producers_of(m.topic)
            if not producers:
                log.info("transaction %s of %s is due for a check but no producer of the topic is connected",
                         tx_id, m.topic)
                continue
            cmd = s.TelemetryCommand(recover_orphaned_transaction_command=s.RecoverOrphanedTransactionCommand(
                message=convert.to_pb(m, ""), transaction_id=tx_id))
            await producers[0].outbox.put(cmd)
            sent += 1
        return sent

    # ---- routes and clients -----------------------------------------------------------------------

    async def QueryRoute(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            topic = self._topic(context, request.topic)
            qs = await self.backend.queues(topic, create=True)
            res = convert.resource(topic, _namespace(context, request.topic))
            return s.QueryRouteResponse(status=_status(), message_queues=[self._queue(res, b, q) for b, q in qs])
        except Exception as e:  # noqa: BLE001 - every error is a Status
            return s.QueryRouteResponse(status=self._fail(e, "QueryRoute"))

    async def QueryAssignment(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            topic = self._topic(context, request.topic)
            self._group(context, request.group)
            qs = await self.backend.queues(topic, create=True)
            res = convert.resource(topic, _namespace(context, request.topic))
            # pop mode: every consumer of the group may receive from every queue
            return s.QueryAssignmentResponse(status=_status(), assignments=[
                d.Assignment(message_queue=self._queue(res, b, q)) for b, q in qs])
        except Exception as e:  # noqa: BLE001
            return s.QueryAssignmentResponse(status=self._fail(e, "QueryAssignment"))

    async def Heartbeat(self, request, context):  # noqa: N802
        try:
            sess = self.sessions.touch(_client_id(context))
            sess.client_type = request.client_type or sess.client_type
            if request.HasField("group") and request.group.name:
                sess.group = self._group(context, request.group)
            return s.HeartbeatResponse(status=_status())
        except Exception as e:  # noqa: BLE001
            return s.HeartbeatResponse(status=self._fail(e, "Heartbeat"))

    async def NotifyClientTermination(self, request, context):  # noqa: N802
        try:
            self.sessions.drop(_client_id(context))
            return s.NotifyClientTerminationResponse(status=_status())
        except Exception as e:  # noqa: BLE001
            return s.NotifyClientTerminationResponse(status=self._fail(e, "NotifyClientTermination"))

    async def _settings_reply(self, context: Any, sess: Any, cs: d.Settings) -> s.TelemetryCommand:
        cfg = self.config
        out = d.Settings()
        out.CopyFrom(cs)
        out.access_point.CopyFrom(self.endpoints)
        kind = cs.WhichOneof("pub_sub")
        if kind == "publishing":
            sess.client_type = d.PRODUCER
            sess.topics = {self._topic(context, t) for t in cs.publishing.topics if t.name}
            out.publishing.max_body_size = cfg.max_message_size
            out.publishing.validate_message_type = False
            out.backoff_policy.max_attempts = 3
            eb = out.backoff_policy.exponential_backoff
            eb.initial.FromMilliseconds(100)
            eb.max.FromSeconds(2)
            eb.multiplier = 2.0
        elif kind == "subscription":
            sub = cs.subscription
            sess.client_type = cs.client_type or sess.client_type
            if sub.HasField("group") and sub.group.name:
                sess.group = self._group(context, sub.group)
                gs = await self.backend.group_settings(sess.group)
            else:
                gs = await self.backend.group_settings("")
            sess.topics = {self._topic(context, e.topic) for e in sub.subscriptions if e.topic.name}
            out.subscription.fifo = gs.fifo
            out.subscription.receive_batch_size = sub.receive_batch_size if sub.HasField("receive_batch_size") else 32
            if not sub.HasField("long_polling_timeout") or not sub.long_polling_timeout.seconds:
                out.subscription.long_polling_timeout.FromSeconds(int(cfg.max_long_polling_s))
            out.backoff_policy.max_attempts = gs.max_attempts
            nxt = out.backoff_policy.customized_backoff.next
            del nxt[:]
            for sec in cfg.retry_delays_s:
                nxt.add().FromMilliseconds(int(sec * 1000))
        return s.TelemetryCommand(status=_status(), settings=out)

    async def Telemetry(self, request_iterator, context):  # noqa: N802
        try:
            cid = _client_id(context)
        except ProxyError as e:
            yield s.TelemetryCommand(status=_status(e.code, e.message))
            return
        sess = self.sessions.touch(cid)
        outbox: asyncio.Queue = asyncio.Queue()
        sess.outbox = outbox

        async def read() -> None:
            try:
                async for cmd in request_iterator:
                    sess.last_seen = time.monotonic()
                    which = cmd.WhichOneof("command")
                    if which == "settings":
                        try:
                            await outbox.put(await self._settings_reply(context, sess, cmd.settings))
                        except Exception as e:  # noqa: BLE001
                            await outbox.put(s.TelemetryCommand(status=self._fail(e, "Telemetry settings")))
                    elif which is not None:
                        log.debug("telemetry %s from %s ignored", which, cid)
            except (asyncio.CancelledError, grpc.RpcError):
                pass
            finally:
                await outbox.put(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await outbox.get()
                if item is None:
                    break
                yield item
        finally:
            reader.cancel()
            if sess.outbox is outbox:
                sess.outbox = None

    # ---- produce ----------------------------------------------------------------------------------

    async def SendMessage(self, request, context):  # noqa: N802
        try:
            md = _meta(context)  # read once: client id and namespace
            if not md.get("x-mq-client-id"):
                raise ProxyError("CLIENT_ID_REQUIRED", "the x-mq-client-id metadata is missing")
            msgs = request.messages
            if not msgs:
                raise ProxyError("BAD_REQUEST", "SendMessage carries no message")
            now = _now_ms()
            ns = md.get("x-mq-namespace", "")
            max_size = self.config.max_message_size
            records = []
            tx_flags = []
            for m in msgs:
                res = m.topic
                topic = convert.internal_name(res if res.resource_namespace or not ns else
                                              d.Resource(resource_namespace=ns, name=res.name), "topic")
                records.append(convert.to_record(m, topic, 0, max_size, now))
                tx_flags.append(m.system_properties.message_type == d.TRANSACTION)
            if len(records) == 1 and not tx_flags[0]:
                results = await self.backend.send(records[0].topic, records)
            elif any(tx_flags) or len({r.topic for r in records}) > 1:
                results = [await self.backend.send_half(r.topic, r) if tx else (await self.backend.send(r.topic, [r]))[0]
                           for r, tx in zip(records, tx_flags, strict=True)]
            else:
                results = await self.backend.send(records[0].topic, records)
            self.stats["sent"] += len(results)
            resp = s.SendMessageResponse()
            resp.status.CopyFrom(_OK)
            add = resp.entries.add
            for r, tx in zip(results, tx_flags, strict=True):
                e = add(message_id=r.msg_id, offset=r.queue_offset,
                        transaction_id=(getattr(r, "transaction_id", "") or r.msg_id) if tx else "")
                e.status.CopyFrom(_OK)
            return resp
        except Exception as e:  # noqa: BLE001
            st = self._fail(e, "SendMessage")
            return s.SendMessageResponse(status=st, entries=[s.SendResultEntry(status=st)])

    async def EndTransaction(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            topic = self._topic(context, request.topic)
            if not request.transaction_id:
                raise ProxyError("INVALID_TRANSACTION_ID", "transaction id is missing")
            if request.resolution not in (d.COMMIT, d.ROLLBACK):
                return s.EndTransactionResponse(status=_status())  # UNKNOWN: the check goes on
            await self.backend.end_transaction(topic, request.transaction_id, request.resolution == d.COMMIT)
            return s.EndTransactionResponse(status=_status())
        except Exception as e:  # noqa: BLE001
            return s.EndTransactionResponse(status=self._fail(e, "EndTransaction"))

    # ---- consume ----------------------------------------------------------------------------------

    async def ReceiveMessage(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            group = self._group(context, request.group)
            topic = self._topic(context, request.message_queue.topic)
            ns = _namespace(context, request.message_queue.topic)
            tags = _tags(request.filter_expression)
            batch = request.batch_size or 32
            if not 1 <= batch <= MAX_BATCH:
                raise ProxyError("BAD_REQUEST", f"batch size must be in 1..{MAX_BATCH}, got {batch}")
            if request.HasField("invisible_duration"):
                inv = _dur_ms(request.invisible_duration)
                if not MIN_INVISIBLE_MS <= inv <= MAX_INVISIBLE_MS:
                    raise ProxyError("ILLEGAL_INVISIBLE_TIME", f"invisible duration must be in "
                                     f"{MIN_INVISIBLE_MS // 1000}s..{MAX_INVISIBLE_MS // 1000}s")
            else:
                inv = int(self.config.default_invisible_s * 1000)
            poll_ms = self.config.max_long_polling_s * 1000
            if request.HasField("long_polling_timeout"):
                poll_ms = _dur_ms(request.long_polling_timeout)
                if poll_ms < 0:
                    raise ProxyError("ILLEGAL_POLLING_TIME", "long polling timeout must not be negative")
                poll_ms = min(poll_ms, self.config.max_long_polling_s * 1000)
            # answer a little before the client's own deadline
            remaining = context.time_remaining()
            if remaining is not None:
                poll_ms = max(0, min(poll_ms, remaining * 1000 - 1500))
            mq = request.message_queue
            got, now = await self.backend.receive(group, topic, mq.broker.name, mq.id, batch, inv, tags, poll_ms)
        except Exception as e:  # noqa: BLE001
            yield s.ReceiveMessageResponse(status=self._fail(e, "ReceiveMessage"))
            return
        if not got:
            yield s.ReceiveMessageResponse(status=_status("MESSAGE_NOT_FOUND", "no new message"))
            return
        yield s.ReceiveMessageResponse(status=_status())
        for r in got:
            yield s.ReceiveMessageResponse(message=convert.to_pb(r.message, ns, r.handle, r.attempt,
                                                                 max(0, r.visible_at - now)))
        self.stats["received"] += len(got)
        ts = s.ReceiveMessageResponse()
        ts.delivery_timestamp.FromMilliseconds(now)
        yield ts

    # ---- pull and offsets (PullConsumer) -------------------------------------------------------------

    async def PullMessage(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            group = self._group(context, request.group)
            mq = request.message_queue
            topic = self._topic(context, mq.topic)
            ns = _namespace(context, mq.topic)
            tags = _tags(request.filter_expression)
            batch = request.batch_size or 32
            if not 1 <= batch <= 1024:
                raise ProxyError("BAD_REQUEST", f"batch size must be in 1..1024, got {batch}")
            if request.offset < 0:
                raise ProxyError("ILLEGAL_OFFSET", f"offset must be >= 0, got {request.offset}")
            poll_ms = min(_dur_ms(request.long_polling_timeout), self.config.max_long_polling_s * 1000)
            remaining = context.time_remaining()
            if remaining is not None:
                poll_ms = max(0, min(poll_ms, remaining * 1000 - 1500))
            code, msgs, nxt = await self.backend.pull(group, topic, mq.broker.name, mq.id, request.offset, batch, tags,
                                                      poll_ms)
        except Exception as e:  # noqa: BLE001
            yield s.PullMessageResponse(status=self._fail(e, "PullMessage"))
            return
        yield s.PullMessageResponse(status=_status(code, "OK" if code == "OK" else {
            "MESSAGE_NOT_FOUND": "no new message", "ILLEGAL_OFFSET": f"offset {request.offset} is outside the queue; "
            f"continue at {nxt}"}.get(code, code)))
        for m in msgs:
            yield s.PullMessageResponse(message=convert.to_pb(m, ns))
        yield s.PullMessageResponse(next_offset=nxt)

    async def UpdateOffset(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            group = self._group(context, request.group)
            mq = request.message_queue
            if request.offset < 0:
                raise ProxyError("ILLEGAL_OFFSET", f"offset must be >= 0, got {request.offset}")
            await self.backend.update_offset(group, self._topic(context, mq.topic), mq.broker.name, mq.id,
                                             request.offset)
            return s.UpdateOffsetResponse(status=_status())
        except Exception as e:  # noqa: BLE001
            return s.UpdateOffsetResponse(status=self._fail(e, "UpdateOffset"))

    async def GetOffset(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            group = self._group(context, request.group)
            mq = request.message_queue
            off = await self.backend.get_offset(group, self._topic(context, mq.topic), mq.broker.name, mq.id)
            return s.GetOffsetResponse(status=_status(), offset=off)
        except Exception as e:  # noqa: BLE001
            return s.GetOffsetResponse(status=self._fail(e, "GetOffset"))

    async def QueryOffset(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            mq = request.message_queue
            topic = self._topic(context, mq.topic)
            if request.query_offset_policy == d.TIMESTAMP:
                raise ProxyError("UNSUPPORTED", "querying an offset by timestamp is not supported")
            off = await self.backend.query_offset(topic, mq.broker.name, mq.id, request.query_offset_policy == d.END)
            return s.QueryOffsetResponse(status=_status(), offset=off)
        except Exception as e:  # noqa: BLE001
            return s.QueryOffsetResponse(status=self._fail(e, "QueryOffset"))

    async def AckMessage(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            group = self._group(context, request.group)
            topic = self._topic(context, request.topic)
            if not request.entries:
                raise ProxyError("BAD_REQUEST", "AckMessage carries no entry")
        except Exception as e:  # noqa: BLE001
            return s.AckMessageResponse(status=self._fail(e, "AckMessage"))
        try:
            errs = await self.backend.ack_many(group, topic, [e.receipt_handle for e in request.entries])
        except Exception as e:  # noqa: BLE001
            return s.AckMessageResponse(status=self._fail(e, "AckMessage"))
        out = []
        for ent, err in zip(request.entries, errs, strict=True):
            st = _status() if err is None else _status(err.code, err.message)
            if err is None:
                self.stats["acked"] += 1
            out.append(s.AckMessageResultEntry(message_id=ent.message_id, receipt_handle=ent.receipt_handle,
                                               status=st))
        bad = [x.status for x in out if x.status.code != d.OK]
        if not bad:
            top = _status()
        elif len(bad) == len(out):
            top = bad[0]
        else:
            top = _status("MULTIPLE_RESULTS", f"{len(bad)} of {len(out)} acknowledgements failed")
        return s.AckMessageResponse(status=top, entries=out)

    async def ChangeInvisibleDuration(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            group = self._group(context, request.group)
            topic = self._topic(context, request.topic)
            inv = _dur_ms(request.invisible_duration)
            if not 0 <= inv <= MAX_INVISIBLE_MS:
                raise ProxyError("ILLEGAL_INVISIBLE_TIME", f"invisible duration must be in 0..{MAX_INVISIBLE_MS // 1000}s")
            h = await self.backend.change_invisible(group, topic, request.receipt_handle, inv, _now_ms())
            return s.ChangeInvisibleDurationResponse(status=_status(), receipt_handle=h)
        except Exception as e:  # noqa: BLE001
            return s.ChangeInvisibleDurationResponse(status=self._fail(e, "ChangeInvisibleDuration"),
                                                     receipt_handle=request.receipt_handle)

    async def ForwardMessageToDeadLetterQueue(self, request, context):  # noqa: N802
        try:
            _client_id(context)
            group = self._group(context, request.group)
            topic = self._topic(context, request.topic)
            await self.backend.forward_to_dead_letter(group, topic, request.receipt_handle,
                                                      max(request.delivery_attempt, 1))
            return s.ForwardMessageToDeadLetterQueueResponse(status=_status())
        except Exception as e:  # noqa: BLE001
            return s.ForwardMessageToDeadLetterQueueResponse(status=self._fail(e, "ForwardMessageToDeadLetterQueue"))
