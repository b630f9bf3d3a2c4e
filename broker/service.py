"""The `Broker` gRPC servicer: producers, consumers and admin over one `MessageStore`.

Owns: request validation (names, sizes, permissions), the send order (validate ->
`hooks.check_writable()` (refusals known before writing: NOT_MASTER, FENCED,
IN_SYNC_REPLICAS_NOT_ENOUGH) -> store put, deduplicating a producer's retry by msg_id (the
original receipts; see broker/store/dedup.py) -> optional sync flush -> `await
hooks.wait_replicated(end)` -> reply; a refusal before the store was touched carries the
`orbitmq-stored: 0` trailing metadata, so a client knows it may send elsewhere), pulls with long polling, consumer heartbeats, offsets, queries and admin RPCs, and the
error model on the wire (gRPC status + `orbitmq-error` trailing metadata). It never stores
anything itself (the store does) and never logs per message.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

import grpc

from orbitmq.broker import names
from orbitmq.broker.consumer_groups import ConsumerGroups
from orbitmq.broker.long_poll import LongPollWaiters
from orbitmq.broker.send_limits import SendLimits
from orbitmq.broker.topic_rules import queue_change_refusal
from orbitmq.common.grpc_errors import ERROR_KEY, MASTER_KEY, clip
from orbitmq.common.grpc_errors import STATUS_OF as _STATUS_OF
from orbitmq.common.grpc_observe import counted_messages
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

if TYPE_CHECKING:
    from orbitmq.broker.server import BrokerServer

log = logging.getLogger("orbitmq.broker.service")

STORED_KEY = "orbitmq-stored"  # "0": the refused send was not appended (nor is an earlier copy known)
PERM_READ, PERM_WRITE = 4, 2
MAX_QUEUES = 1024

_S = grpc.StatusCode
STATUS_OF: dict[str, grpc.StatusCode] = {c.value: st for c, st in _STATUS_OF.items()}   # by name


class WireError(Exception):  # noqa: N818 - the wire's word for it
    """A refusal with an ErrorCode name; the servicer turns it into status + trailing metadata."""

    def __init__(self, code: str, details: str, master_address: str = "") -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.master_address = master_address


def error_parts(exc: BaseException) -> tuple[grpc.StatusCode, str, str, str]:
    """(status, code name, details, master address) for any exception we may see."""
    code = getattr(exc, "code", None)
    if not isinstance(code, str):
        code = getattr(code, "name", None) if code is not None and not callable(code) else None
    if not isinstance(code, str) or code not in STATUS_OF:
        return _S.INTERNAL, "INTERNAL", f"{type(exc).__name__}: {exc}", ""
    details = getattr(exc, "details", None)
    if not isinstance(details, str):
        details = str(exc)
    return STATUS_OF[code], code, details, getattr(exc, "master_address", "") or ""


async def abort(context: grpc.aio.ServicerContext, exc: BaseException, not_stored: bool = False) -> None:
    status, code, details, master = error_parts(exc)
    md: tuple[tuple[str, str], ...] = ((ERROR_KEY, code),)
    if master:
        md += ((MASTER_KEY, master),)
    if not_stored:
        md += ((STORED_KEY, "0"),)
    await context.abort(status, clip(details), trailing_metadata=md)


def _name_error(exc: Exception, default_code: str) -> WireError:
    code = getattr(exc, "code", None)
    return WireError(code if isinstance(code, str) and code in STATUS_OF else default_code, str(exc))


def parse_tags(expr: str) -> set[str] | None:
    """'*' or '' -> None (all); 'a || b' -> {'a', 'b'}."""
    expr = expr.strip()
    if expr in ("", "*"):
        return None
    tags = {t.strip() for t in expr.split("||")}
    tags.discard("")
    if not tags or "*" in tags:
        return None
    return tags


class BrokerService(broker_pb2_grpc.BrokerServicer):
    """All Broker RPCs; state beyond the store is only consumer membership and counters."""

    def __init__(self, server: BrokerServer) -> None:
        self.server = server
        self.config = server.config
        self.store = server.store
        self._secret: bytes | None = None   # the cluster secret, loaded on first use (signed admin RPCs)
        self.groups = ConsumerGroups(expire_s=self.config.consumer_expire_s)
        self.waiters = LongPollWaiters(asyncio.get_running_loop())
        self._rr = itertools.count()
        self.stats = {"msgs_put": 0, "bytes_put": 0, "msgs_got": 0, "bytes_got": 0, "sends": 0, "pulls": 0,
                      "send_errors": 0, "duplicates": 0}
        self._topics: dict[str, common_pb2.TopicConfig] = {}
        self.reload_topics()
        self.send_limits = SendLimits(self.config.max_pending_send_bytes, self.config.disk_refuse_ratio,
                                      self.store.disk_usage)

    @property
    def hooks(self):
        return self.server.hooks

    # ---- topic cache ------------------------------------------------------------------------------

    def reload_topics(self, names: set[str] | None = None) -> None:
        """Refresh the topic cache from the store (after admin changes, replication, restart): the
        named topics, or all of them."""
        if names is None:
            self._topics = {t.topic: t for t in self.server.store_topics()}
            return
        for name in names:
            cfg = self.server.store_topic(name)
            if cfg is None:
                self._topics.pop(name, None)
            else:
                self._topics[name] = cfg

    def topic_config(self, topic: str) -> common_pb2.TopicConfig | None:
        cfg = self._topics.get(topic)
        if cfg is None:
            self.reload_topics({topic})  # a follower may have received it by replication
            cfg = self._topics.get(topic)
        return cfg

    def _require_topic(self, topic: str) -> common_pb2.TopicConfig:
        """The topic's config, or BAD_TOPIC_NAME / TOPIC_NOT_FOUND."""
        cfg = self._topics.get(topic)
        if cfg is not None:
            return cfg
        try:
            names.validate_topic(topic)
        except ValueError as e:
            raise _name_error(e, "BAD_TOPIC_NAME") from None
        cfg = self.topic_config(topic)
        if cfg is not None:
            return cfg
        raise WireError("TOPIC_NOT_FOUND", f"topic {topic!r} does not exist on broker {self.config.broker_set}")

    async def _topic_for_send(self, topic: str) -> common_pb2.TopicConfig:
        cfg = self._topics.get(topic)
        if cfg is not None:
            return cfg
        try:
            return self._require_topic(topic)
        except WireError as e:
            if e.code != "TOPIC_NOT_FOUND" or not (self.config.auto_create_topics and self.config.writable):
                raise
        self.hooks.check_writable()
        n = self.config.default_queues
        cfg = common_pb2.TopicConfig(topic=topic, read_queues=n, write_queues=n, perm=PERM_READ | PERM_WRITE)
        await self.server.store_put_topic(cfg)
        self._topics[topic] = cfg
        log.info("auto-created topic %s with %d queues", topic, n)
        self.server.topics_changed({topic})
        return cfg

    # ---- producers ----------------------------------------------------------------------------------

    async def SendMessage(self, request: broker_pb2.SendRequest, context) -> broker_pb2.SendResponse:  # noqa: N802
        return await self.send(request, context, request.batch)   # (read once: each read copies it)

    async def send(self, request: broker_pb2.SendRequest, context: Any,
                   batch: bytes | memoryview) -> broker_pb2.SendResponse:
        """SendMessage with the batch record given apart from `request` (whose own `batch` is then
        not read): the framed port passes it as a view of the frame it arrived in, not a copy."""
        touched = False
        try:
            msgs = request.messages
            if batch:
                if msgs:
                    raise WireError("BAD_REQUEST", "send request has both messages and a batch record")
            elif not msgs:
                raise WireError("BAD_REQUEST", "send request has no messages")
            topic = request.topic
            cfg = await self._topic_for_send(topic)
            if not self.config.writable or not cfg.perm & PERM_WRITE:
                raise WireError("NO_PERMISSION", f"topic {topic!r} is not writable on broker "
                                f"{self.config.broker_set}/{self.config.broker_id}")
            qid = request.queue_id
            if qid < 0:
                qid = next(self._rr) % max(1, cfg.write_queues)
            elif qid >= cfg.write_queues:
                raise WireError("BAD_REQUEST", f"queue_id {qid} out of range: topic {topic!r} has "
                                f"{cfg.write_queues} write queues")
            if batch:
                records = None
                held = len(batch)
            else:
                records = self.server.to_records(topic, qid, msgs, context.peer())
                held = sum(len(r.body) for r in records)   # (the records hold the bodies: no protobuf copies)
            hooks = self.server.hooks
            gate = hooks.send_gate
            if gate is not None:   # a master handing off holds new sends briefly
                await gate()
            hooks.check_writable()
            refusal = self.send_limits.admit(held)   # disk past its ratio, or too many bytes waiting
            if refusal is not None:
                raise WireError(refusal.code, refusal.message)
            try:
                if records is None:
                    # one record for the whole batch: validated and stamped, never re-encoded
                    br_res, dup = self.server.store_put_batch_record(batch, topic, qid)
                    touched = True
                    results = ()
                    n_put = br_res.count
                    end = br_res.end_offset
                else:
                    results, dup = self.store.put_batch_dedup(records)  # raises before appending anything, or appends
                    touched = True
                    n_put = len(results)
                    end = results[-1].end_offset if n_put == 1 else max(r.end_offset for r in results)
                await self._settle(end)
            finally:
                self.send_limits.release(held)
            st = self.stats
            st["sends"] += 1
            if dup:
                st["duplicates"] += n_put  # a retry: answered with the original receipts, not stored again
                counted_messages.set(0)
            else:
                st["msgs_put"] += n_put
            out = broker_pb2.SendResponse(broker_set=self.config.broker_set, epoch=hooks.epoch())
            if batch:
                b = out.batch
                b.queue_id, b.base_queue_offset, b.count = br_res.queue_id, br_res.base_queue_offset, br_res.count
                b.physical_offset, b.first_msg_id = br_res.physical_offset, br_res.first_msg_id
                return out
            add = out.results.add
            for r in results:
                add(msg_id=r.msg_id, queue_id=r.queue_id, queue_offset=r.queue_offset,
                    physical_offset=r.physical_offset)
            return out
        except Exception as e:  # noqa: BLE001 - every failure becomes a typed wire error
            self.stats["send_errors"] += 1
            await self._fail(context, e, not_stored=not touched)

    def limit_stats(self) -> dict[str, int]:
        """Load-limit counters: bytes of sends held, refusals, requests in flight."""
        out = self.send_limits.stats()
        lim = getattr(self.server, "limiter", None)
        if lim is not None:
            out.update(requests_in_flight=lim.limits.in_flight, requests_refused_too_many=lim.refused)
        return out

    async def _settle(self, end: int) -> None:
        """Wait until [0, end) is flushed (sync flush) and held by the in-sync replicas."""
        if self.config.flush_mode == "sync":
            try:
                await asyncio.wait_for(self.store.flushed(end), self.config.flush_timeout_s)
            except TimeoutError:
                raise WireError("FLUSH_TIMEOUT", f"not flushed within {self.config.flush_timeout_s}s") from None
        await self.hooks.wait_replicated(end)

    async def _fail(self, context, e: BaseException, not_stored: bool = False) -> None:
        if isinstance(e, asyncio.CancelledError):
            raise e
        status, code, _, _ = error_parts(e)
        if code == "INTERNAL":
            log.exception("internal error in request")
        await abort(context, e, not_stored)

    # ---- consumers ----------------------------------------------------------------------------------

    async def PullMessage(self, request: broker_pb2.PullRequest, context) -> broker_pb2.PullResponse:  # noqa: N802
        try:
            topic, qid = request.topic, request.queue_id
            cfg = self._require_topic(topic)
            if not cfg.perm & PERM_READ:
                raise WireError("NO_PERMISSION", f"topic {topic!r} is not readable")
            if not 0 <= qid < max(cfg.read_queues, cfg.write_queues):
                raise WireError("BAD_REQUEST", f"queue_id {qid} out of range for topic {topic!r}")
            if request.queue_offset < 0:
                raise WireError("BAD_REQUEST", "queue_offset must be >= 0")
            # > 0, not >= 0: a client that leaves the field unset (0) must not reset the group's offset
            if request.commit_offset > 0 and request.group:
                self._commit(request.group, topic, qid, request.commit_offset, piggyback=True)
            max_n = min(request.max_messages or 32, self.config.pull_max_messages)
            max_bytes = min(request.max_bytes or self.config.pull_max_bytes, self.config.pull_max_bytes)
            tags = parse_tags(request.tag_expression)
            store = self.store
            # a client that decodes batch records gets them as stored (no per-message work here)
            get = store.get_raw if request.accept_batches else store.get_messages
            res = get(topic, qid, request.queue_offset, max_n, max_bytes, tags)
            wait_s = min(request.long_poll_ms, self.config.long_poll_max_ms) / 1000.0
            if self.server.status_name(res) == "NO_NEW" and wait_s > 0:
                remaining = context.time_remaining()
                if remaining is not None:
                    wait_s = min(wait_s, max(0.0, remaining - 0.05))
                deadline = time.monotonic() + wait_s
                key = (topic, qid)
                while self.server.status_name(res) == "NO_NEW":
                    left = deadline - time.monotonic()
                    if left <= 0 or self.server.stopping:
                        break
                    fut = self.waiters.park(key)
                    try:
                        res = get(topic, qid, request.queue_offset, max_n, max_bytes, tags)
                        if self.server.status_name(res) != "NO_NEW":
                            break
                        await self.waiters.wait(fut, left)
                    finally:
                        self.waiters.unpark(key, fut)
                    res = get(topic, qid, request.queue_offset, max_n, max_bytes, tags)
            return self._pull_response(res, request.queue_offset)
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    def _pull_response(self, res: Any, offset: int) -> broker_pb2.PullResponse:
        status = self.server.status_name(res)
        out = broker_pb2.PullResponse(next_offset=res.next_offset, min_offset=res.min_offset,
                                      max_offset=res.max_offset)
        if status == "FOUND":
            items = getattr(res, "items", None)  # a RawGetResult (accept_batches) has items
            if items:
                out.status = broker_pb2.PULL_FOUND
                bset = self.config.broker_set
                for it in items:
                    if isinstance(it, bytes):
                        out.batches.append(it)
                    else:
                        out.messages.append(self.server.to_proto(it, bset))
                self.stats["msgs_got"] += res.count
            elif items is None and res.messages:
                out.status = broker_pb2.PULL_FOUND
                bset = self.config.broker_set
                pm = [self.server.to_proto(m, bset) for m in res.messages]
                out.messages.extend(pm)
                self.stats["msgs_got"] += len(pm)
            else:
                out.status = broker_pb2.PULL_NO_MATCHED_MSG
        elif status == "NO_NEW":
            out.status = broker_pb2.PULL_NO_NEW_MSG
            out.next_offset = max(offset, res.next_offset)
        elif status == "OFFSET_MOVED":
            out.status = broker_pb2.PULL_OFFSET_MOVED
        elif status == "OFFSET_TOO_BIG":
            out.status = broker_pb2.PULL_OFFSET_ILLEGAL
        elif status == "NO_QUEUE":
            out.status = broker_pb2.PULL_NO_NEW_MSG
            out.next_offset = 0
        else:
            out.status = broker_pb2.PULL_NO_MATCHED_MSG if status == "NO_MATCHED" else broker_pb2.PULL_NO_NEW_MSG
        self.stats["pulls"] += 1
        return out

    async def ConsumerHeartbeat(self, request, context):  # noqa: N802
        try:
            self._check_group(request.group)
            if not request.client_id:
                raise WireError("BAD_REQUEST", "client_id is required")
            subs = {s.topic: s.tag_expression for s in request.subscriptions}
            if self.groups.heartbeat(request.group, request.client_id, subs, int(request.model), time.monotonic()):
                log.info("consumer joined/changed group=%s client=%s", request.group, request.client_id)
            return broker_pb2.ConsumerHeartbeatResponse()
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def UnregisterConsumer(self, request, context):  # noqa: N802
        if self.groups.unregister(request.group, request.client_id):
            log.info("consumer left group=%s client=%s", request.group, request.client_id)
        return broker_pb2.UnregisterConsumerResponse()

    async def GetConsumerList(self, request, context):  # noqa: N802
        return broker_pb2.GetConsumerListResponse(client_ids=self.groups.clients(request.group, time.monotonic()))

    def _check_group(self, group: str) -> None:
        try:
            names.validate_group(group)
        except ValueError as e:
            raise _name_error(e, "BAD_REQUEST") from None

    def _commit(self, group: str, topic: str, qid: int, offset: int, piggyback: bool = False) -> None:
        self._check_group(group)
        try:
            self.hooks.check_writable()
        except Exception:
            if piggyback:
                return  # a follower serving reads keeps no offsets; the client commits to the master
            raise
        self.server.store_commit_offset(group, topic, qid, offset)

    async def CommitOffset(self, request, context):  # noqa: N802
        try:
            self._require_topic(request.topic)
            if request.offset < 0:
                raise WireError("BAD_REQUEST", "offset must be >= 0")
            self._commit(request.group, request.topic, request.queue_id, request.offset)
            return broker_pb2.CommitOffsetResponse()
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def QueryOffset(self, request, context):  # noqa: N802
        try:
            self._check_group(request.group)
            off = self.server.store_query_offset(request.group, request.topic, request.queue_id)
            return broker_pb2.QueryOffsetResponse(offset=-1 if off is None else off)
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def GetOffsetRange(self, request, context):  # noqa: N802
        try:
            self._require_topic(request.topic)
            return broker_pb2.GetOffsetRangeResponse(
                min_offset=self.store.min_offset(request.topic, request.queue_id),
                max_offset=self.store.max_offset(request.topic, request.queue_id))
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def QueryMessageByKey(self, request, context):  # noqa: N802
        try:
            self._require_topic(request.topic)
            if not request.key:
                raise WireError("BAD_KEY", "key is empty")
            limit = min(request.max_messages or 32, self.config.pull_max_messages)
            msgs = self.store.query_by_key(request.topic, request.key, limit)
            bset = self.config.broker_set
            return broker_pb2.QueryMessagesResponse(messages=[self.server.to_proto(m, bset) for m in msgs])
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def QueryMessageById(self, request, context):  # noqa: N802
        try:
            if not request.msg_id:
                raise WireError("BAD_REQUEST", "msg_id is empty")
            m = self.store.query_by_msg_id(request.msg_id)
            if m is None:
                raise WireError("MESSAGE_NOT_FOUND", f"no message with id {request.msg_id!r}")
            return broker_pb2.QueryMessagesResponse(messages=[self.server.to_proto(m, self.config.broker_set)])
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    # ---- admin --------------------------------------------------------------------------------------

    async def CreateTopic(self, request, context):  # noqa: N802
        try:
            cfg = request.config
            try:
                names.validate_topic(cfg.topic)
            except ValueError as e:
                raise _name_error(e, "BAD_TOPIC_NAME") from None
            if not (1 <= cfg.read_queues <= MAX_QUEUES and 1 <= cfg.write_queues <= MAX_QUEUES):
                raise WireError("BAD_REQUEST", f"queue counts must be in 1..{MAX_QUEUES}")
            perm = cfg.perm or (PERM_READ | PERM_WRITE)
            if perm & ~(PERM_READ | PERM_WRITE):
                raise WireError("BAD_REQUEST", f"perm must be a combination of 4 (read) and 2 (write), got {cfg.perm}")
            why = queue_change_refusal(self.topic_config(cfg.topic), cfg)
            if why is not None:
                raise WireError("BAD_REQUEST", why)
            self.hooks.check_writable()
            new = common_pb2.TopicConfig()
            new.CopyFrom(cfg)
            new.perm = perm
            await self.server.store_put_topic(new)
            self._topics[new.topic] = new
            log.info("topic created/updated topic=%s read=%d write=%d perm=%d", new.topic, new.read_queues,
                     new.write_queues, new.perm)
            self.server.topics_changed({new.topic})
            await self.server.topics_published()   # routable when this call returns
            return broker_pb2.CreateTopicResponse()
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def DeleteTopic(self, request, context):  # noqa: N802
        try:
            self._require_topic(request.topic)
            self.hooks.check_writable()
            await self.server.store_delete_topic(request.topic)
            self._topics.pop(request.topic, None)
            log.info("topic deleted topic=%s", request.topic)
            self.server.topics_changed({request.topic})
            await self.server.topics_published()
            return broker_pb2.DeleteTopicResponse()
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def ListTopics(self, request, context):  # noqa: N802
        self.reload_topics()
        return broker_pb2.ListTopicsResponse(topics=[self._topics[t] for t in sorted(self._topics)])

    async def CreateSubscriptionGroup(self, request, context):  # noqa: N802
        try:
            self._check_group(request.config.group)
            self.hooks.check_writable()
            await self.server.store_put_group(request.config)
            return broker_pb2.CreateSubscriptionGroupResponse()
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def DeleteSubscriptionGroup(self, request, context):  # noqa: N802
        try:
            self._check_group(request.group)
            self.hooks.check_writable()
            if not await self.server.store_delete_group(request.group):
                raise WireError("GROUP_NOT_FOUND", f"subscription group {request.group!r} does not exist")
            return broker_pb2.DeleteSubscriptionGroupResponse()
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def GetConsumeStats(self, request, context):  # noqa: N802
        try:
            self._check_group(request.group)
            out = broker_pb2.GetConsumeStatsResponse(broker_set=self.config.broker_set)
            if request.topic:
                self._require_topic(request.topic)
                topics = [request.topic]
            else:
                topics = sorted(self.server.store_group_topics(request.group))
            for topic in topics:
                cfg = self.topic_config(topic)
                if cfg is None:
                    continue
                for q in range(max(cfg.read_queues, cfg.write_queues)):
                    mx = self.store.max_offset(topic, q)
                    off = self.server.store_query_offset(request.group, topic, q)
                    c = -1 if off is None else off
                    out.queues.append(broker_pb2.QueueStats(topic=topic, queue_id=q, broker_offset=mx,
                                                            consumer_offset=c, lag=max(0, mx - max(c, 0))))
            return out
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)

    async def HandOffMaster(self, request, context):  # noqa: N802
        """HA: hand mastership to a caught-up replica (broker/ha/role_manager.py `hand_off`). With a
        cluster secret the call must be signed with it, like the controllers' admin writes."""
        try:
            self._check_signed(request, context, "/orbitmq.v1.Broker/HandOffMaster")
            timeout = request.timeout_s if request.timeout_s > 0 else 5.0
            if not timeout <= 60 or request.broker_id < 0:
                raise WireError("BAD_REQUEST", "need timeout_s <= 60 and broker_id >= 0")
            r = await self.hooks.hand_off(int(request.broker_id), timeout)
        except Exception as e:  # noqa: BLE001
            await self._fail(context, e)
        return broker_pb2.HandOffResponse(ok=bool(r["ok"]), code=str(r["code"]), reason=str(r["reason"]),
                                          master_id=int(r.get("master_id", 0)),
                                          master_address=str(r.get("master_address", "")),
                                          epoch=int(r.get("epoch", 0)))

    def _check_signed(self, request: Any, context: Any, method: str) -> None:
        from orbitmq.common import node_auth
        from orbitmq.common.node_auth_grpc import payload_of

        secret = self._secret
        if secret is None:
            secret = self._secret = node_auth.load_secret(self.config.cluster_secret_file) or b""
        if not secret:
            return
        header = dict(context.invocation_metadata() or ()).get(node_auth.HEADER)
        try:
            node_auth.verify(secret, method, payload_of(request), header, int(time.time() * 1000))
        except node_auth.NodeAuthError as e:
            raise WireError("NO_PERMISSION", f"{method} must be signed with the cluster secret: {e}") from None

    async def GetBrokerStatus(self, request, context):  # noqa: N802
        s = self.store
        st = {k: str(v) for k, v in self.stats.items()}
        st["parked_pulls"] = str(self.waiters.parked)
        st.update((k, str(v)) for k, v in self.limit_stats().items())
        st["registrations"] = str(self.server.registrar.registrations if self.server.registrar else 0)
        r = getattr(s, "recovery", None)   # how the store found its log end at start: checkpoint, scan, new
        if r:
            st.update(recovery=r["path"], recovery_s=str(r["seconds"]), recovery_reason=r["reason"],
                      recovery_log_end_s=str(r["log_end_s"]))
        return broker_pb2.BrokerStatus(
            cluster=self.config.cluster, broker_set=self.config.broker_set, broker_id=self.config.broker_id,
            role=self.hooks.role(), epoch=self.hooks.epoch(), max_physical_offset=s.max_physical_offset,
            confirm_offset=self.server.store_confirm_offset(), min_physical_offset=s.min_physical_offset,
            stats=st)


class _Malformed:
    """Stands in for a request whose bytes did not parse; the guarded handler answers BAD_REQUEST."""

    __slots__ = ("error", "type_name")

    def __init__(self, type_name: str, error: Exception) -> None:
        self.type_name = type_name
        self.error = error


def _safe_parser(cls: Any):
    from_string = cls.FromString
    name = cls.DESCRIPTOR.name

    def parse(data: bytes) -> Any:
        try:
            return from_string(data)
        except Exception as e:  # noqa: BLE001 - any decode failure is the client's malformed request
            return _Malformed(name, e)
    return parse


def _guard(fn):
    async def handler(request, context):
        if type(request) is _Malformed:
            await abort(context, WireError("BAD_REQUEST", f"malformed {request.type_name}: {request.error}"))
        return await fn(request, context)
    return handler


def add_to_server(service: BrokerService, server: grpc.aio.Server) -> None:
    """Register every Broker RPC; undecodable request bytes get BAD_REQUEST, not a bare INTERNAL."""
    desc = broker_pb2.DESCRIPTOR.services_by_name["Broker"]
    handlers = {}
    for m in desc.methods:
        req_cls = getattr(broker_pb2, m.input_type.name)
        resp_cls = getattr(broker_pb2, m.output_type.name)
        handlers[m.name] = grpc.unary_unary_rpc_method_handler(
            _guard(getattr(service, m.name)), request_deserializer=_safe_parser(req_cls),
            response_serializer=resp_cls.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(desc.full_name, handlers),))
    server.add_registered_method_handlers(desc.full_name, handlers)
