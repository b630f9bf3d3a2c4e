"""The proxy's cluster mode: stateless; every request is forwarded to the brokers through routes.

Owns: topic routes from the name servers (cached by `orbitmq.client.transport.Transport`), picking
a queue for a send (message-group hash for FIFO, else round robin over writable queues), calling
the master of a broker set (`Broker.SendMessage`, `BrokerPop.*`; the receipt handle names the
broker set), and mapping broker errors to protocol codes. Sends reach a master over its framed port
(`framed_client.py`) when the routes announce one and `broker_protocol` is auto, else over gRPC. Sends and acks go through lanes
(`send_lanes.py`): concurrent SendMessage / AckMessage calls for one lane share a broker call. It keeps no message or pop state: a
restarted or different proxy serves the same clients.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

import grpc

from orbitmq.broker.pop_core import Handle, PopError
from orbitmq.broker.pop_service import PROP_DELIVER_MS, PROP_MSG_GROUP, Received
from orbitmq.broker.service import STORED_KEY
from orbitmq.broker.store.record import Message as Record
from orbitmq.broker.timer_service import TIMER_TOPIC, divert
from orbitmq.client import errors as cerr
from orbitmq.client.transport import Transport
from orbitmq.common.framing import ErrorInfo
from orbitmq.common.tls import TlsConfig, client_ssl_context
from orbitmq.common.tls import from_config as tls_from_config
from orbitmq.common.tls_grpc import aio_channel
from orbitmq.protos import (
    broker_pb2,
    broker_pb2_grpc,
    broker_pop_pb2,
    broker_pop_pb2_grpc,
    common_pb2,
    namesrv_pb2,
)
from orbitmq.proxy.config import ProxyConfig
from orbitmq.proxy.convert import PROP_TX_CHECK_S
from orbitmq.proxy.errors import ProxyError, from_broker
from orbitmq.proxy.framed_client import FramedBrokers, FramedCallError
from orbitmq.proxy.local_backend import GroupSettings
from orbitmq.proxy.send_lanes import Lanes

log = logging.getLogger("orbitmq.proxy.cluster")

ROUTE_TTL_S = 5.0
NORMAL_IN_FLIGHT = 2  # broker calls at a time per (broker set, topic) for messages without a group
ACK_IN_FLIGHT = 2  # PopAck calls at a time per (master, group, topic)
MSG_OVERHEAD = 256  # bytes a forwarded message adds to its body, for the batch size limit


class _NotStored(Exception):
    """A refused send the broker says it did not store (`orbitmq-stored: 0`): safe to send again."""

    def __init__(self, error: ProxyError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(slots=True)
class SendResult:
    msg_id: str
    queue_id: int
    queue_offset: int
    transaction_id: str = ""


def _record(m: common_pb2.Message) -> Record:
    return Record(m.topic, m.body, m.queue_id, m.tags, list(m.keys), dict(m.properties), m.msg_id, m.flags,
                  m.sys_flag, m.born_timestamp, m.born_host, m.store_host, m.store_timestamp, m.reconsume_times,
                  queue_offset=m.queue_offset, physical_offset=m.physical_offset)


def _framed_error(info: ErrorInfo, addr: str) -> ProxyError:
    if info.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return ProxyError("PROXY_TIMEOUT", f"broker {addr} did not answer: {info.details}")
    return from_broker(info.code, f"broker {addr}: {info.details}")


def _rpc_error(e: grpc.aio.AioRpcError, addr: str) -> ProxyError:
    md = dict(e.trailing_metadata() or ())
    name = md.get("orbitmq-error", "")
    if name:
        return from_broker(name, f"broker {addr}: {e.details()}")
    if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ProxyError("PROXY_TIMEOUT", f"broker {addr} did not answer: {e.details()}")
    return ProxyError("INTERNAL_ERROR", f"broker {addr}: {e.code().name} {e.details()}")


class ClusterBackend:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.transport: Transport | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._rr = itertools.count()
        self._groups: dict[str, tuple[float, GroupSettings]] = {}
        self._stubs: dict[tuple[str, Any], Any] = {}
        self._routes: dict[str, tuple[float, Any]] = {}
        self._lanes = Lanes()
        self._queue_rr: dict[tuple[str, str], itertools.count] = {}
        self._flights: set[asyncio.Task] = set()
        self._framed_addr: dict[str, str] = {}  # broker gRPC address -> its framed address (from routes)
        self._framed: FramedBrokers | None = None

    def _tls(self) -> TlsConfig:
        """Brokers and name servers are dialed with the proxy's own TLS settings."""
        return tls_from_config(self.config)

    async def open(self) -> None:
        self.transport = Transport(self.config.namesrv, route_refresh_s=5.0, tls=self._tls())
        if self.config.broker_protocol == "auto":
            from orbitmq.common.node_auth import load_secret
            self._framed = FramedBrokers(client_ssl_context(self._tls()),
                                         cluster_secret=load_secret(self.config.cluster_secret_file))

    async def close(self) -> None:
        if self._framed is not None:
            await self._framed.close()
        for ch in self._channels.values():
            await ch.close()
        if self.transport is not None:
            await asyncio.to_thread(self.transport.close)

    # ---- plumbing ---------------------------------------------------------------------------------

    def _channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            # signed with the cluster secret (if any): brokers with auth_enabled take the proxy as a node
            from orbitmq.common.node_auth import load_secret
            from orbitmq.common.node_auth_grpc import signing_interceptors
            ch = self._channels[addr] = aio_channel(addr, self._tls(), options=[
                ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
                interceptors=signing_interceptors(load_secret(self.config.cluster_secret_file)))
        return ch

    async def _route(self, topic: str, refresh: bool = False) -> Any:
        hit = self._routes.get(topic)
        if hit is not None and not refresh and time.monotonic() - hit[0] < ROUTE_TTL_S:
            return hit[1]
        try:
            info = await asyncio.to_thread(self.transport.route, topic, True)
            self._routes[topic] = (time.monotonic(), info)
            for replicas in info.replicas.values():
                for a in replicas.values():   # a broker restarted without its framed port is called over gRPC
                    if info.remoting.get(a):
                        self._framed_addr[a] = info.remoting[a]
                    else:
                        self._framed_addr.pop(a, None)
            return info
        except cerr.TopicNotFoundError as e:
            raise ProxyError("TOPIC_NOT_FOUND", f"topic {topic!r} does not exist: {e.details}") from None
        except cerr.BadTopicNameError as e:
            raise ProxyError("ILLEGAL_TOPIC", str(e)) from None
        except cerr.OrbitError as e:
            raise from_broker(e.code, str(e)) from None

    async def _master(self, topic: str, broker_set: str) -> str:
        route = await self._route(topic)
        addr = route.masters.get(broker_set)
        if addr is None:
            route = await self._route(topic, refresh=True)
            addr = route.masters.get(broker_set)
        if addr is None:
            raise ProxyError("HA_NOT_AVAILABLE", f"broker set {broker_set!r} of topic {topic!r} has no master now")
        return addr

    async def _call(self, addr: str, stub_cls: Any, method: str, req: Any, timeout: float = 10.0) -> Any:
        stub = self._stubs.get((addr, stub_cls))
        if stub is None:
            stub = self._stubs[(addr, stub_cls)] = stub_cls(self._channel(addr))
        try:
            return await getattr(stub, method)(req, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            err = _rpc_error(e, addr)
            if err.code in ("HA_NOT_AVAILABLE", "PROXY_TIMEOUT"):
                self._routes.clear()  # the master may have moved
            raise err from None

    # ---- topics and groups ------------------------------------------------------------------------

    async def queues(self, topic: str, create: bool = False) -> list[tuple[str, int]]:
        route = await self._route(topic)
        qs = route.read_queues or route.write_queues
        if not qs:
            raise ProxyError("TOPIC_NOT_FOUND", f"topic {topic!r} has no readable queue on a live broker")
        return [(q.broker_set, q.queue_id) for q in qs]

    async def group_settings(self, group: str) -> GroupSettings:
        hit = self._groups.get(group)
        if hit is not None and time.monotonic() - hit[0] < 10:
            return hit[1]
        gs = GroupSettings(False, self.config.max_attempts)
        try:
            info = await asyncio.to_thread(self.transport.call_namesrv, "GetClusterInfo",
                                           namesrv_pb2.GetClusterInfoRequest())
            masters = [b.master_address for c in info.clusters.values() for b in c.broker_sets if b.master_address]
            if masters and group:
                r = await self._call(masters[0], broker_pop_pb2_grpc.BrokerPopStub, "GroupSettings",
                                     broker_pop_pb2.GroupSettingsRequest(group=group))
                gs = GroupSettings(r.fifo, r.max_attempts or self.config.max_attempts)
        except (cerr.OrbitError, ProxyError) as e:
            log.warning("group settings of %s unavailable (%s); using defaults", group, e)
        self._groups[group] = (time.monotonic(), gs)
        return gs

    # ---- produce ----------------------------------------------------------------------------------

    async def send(self, topic: str, records: list[Record]) -> list[SendResult]:
        """Forward `records` (one topic), each through its lane (see send_lanes.py): a message group's
        queue by hash (one call at a time, so the group stays in order), a scheduled message to its
        broker set's timer topic, any other message to a broker set round robin, its queue picked per
        batch. Concurrent sends to one lane share a broker call; each gets its own result."""
        route = await self._route(topic)
        qs = route.write_queues
        if not qs:
            raise ProxyError("TOPIC_NOT_FOUND", f"topic {topic!r} has no writable queue on a live master")
        loop = asyncio.get_running_loop()
        now = int(time.time() * 1000)
        futs = []
        for r in records:
            props = r.properties
            group = props.get(PROP_MSG_GROUP, "")
            q = qs[zlib.crc32(group.encode()) % len(qs)] if group else qs[next(self._rr) % len(qs)]
            addr = route.masters[q.broker_set]
            limit = 1
            if int(props.get(PROP_DELIVER_MS) or 0) > now:
                r.queue_id = q.queue_id
                divert(r)  # scheduled: that broker's timer stores it in its topic when due
                key = (addr, TIMER_TOPIC, 0, q.broker_set)
            elif group:
                key = (addr, r.topic, q.queue_id, q.broker_set)
            else:
                key = (addr, r.topic, -1, q.broker_set)  # the queue is picked per batch
                limit = NORMAL_IN_FLIGHT
            m = common_pb2.Message(topic=r.topic, body=r.body, tags=r.tags, keys=r.keys, properties=r.properties,
                                   msg_id=r.msg_id, born_timestamp=r.born_timestamp, born_host=r.born_host)
            fut = loop.create_future()
            futs.append(fut)
            if self._lanes.add(key, (m, fut), len(r.body) + MSG_OVERHEAD, limit):
                self._start_flight(key)
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("queued behind a busy lane: send (%d waiting)", self._lanes.waiting(key))
        if len(futs) == 1:
            return [await futs[0]]
        return list(await asyncio.gather(*futs))

    def _start_flight(self, key: tuple) -> None:
        t = asyncio.get_running_loop().create_task(self._flight(key))
        self._flights.add(t)
        t.add_done_callback(self._flights.discard)

    async def _flight(self, key: tuple) -> None:
        """One broker call for the next batch of lane `key` (a send lane, or an ack lane: key[0] == "ack"),
        then the next batch if more wait."""
        batch = self._lanes.take(key)
        if not batch:
            return
        try:
            await (self._ack_batch if key[0] == "ack" else self._forward)(key, batch)
        except BaseException as e:  # noqa: BLE001 - every waiting send gets an answer
            err = e if isinstance(e, ProxyError) else ProxyError("INTERNAL_ERROR", f"forward failed: {e!r}")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            if self._lanes.finish(key):
                self._start_flight(key)

    async def _forward(self, key: tuple, batch: list) -> None:
        addr, topic, qid, bset = key
        if qid < 0:
            route = await self._route(topic)
            qids = [q.queue_id for q in route.write_queues if q.broker_set == bset] or [0]
            rr = self._queue_rr.get((topic, bset))
            if rr is None:
                rr = self._queue_rr[(topic, bset)] = itertools.count()
            qid = qids[next(rr) % len(qids)]  # its own count: the broker set pick must not skew it
        try:
            resp = await self._send_rpc(addr, topic, qid, [m for m, _ in batch])
        except _NotStored as ns:
            if len(batch) == 1:
                raise ns.error from None
            # nothing of the batch was stored: each send on its own, so one bad message fails alone
            for m, fut in batch:
                try:
                    res = (await self._send_rpc(addr, topic, qid, [m])).results[0]
                    if not fut.done():
                        fut.set_result(SendResult(res.msg_id, res.queue_id, res.queue_offset))
                except _NotStored as e1:
                    if not fut.done():
                        fut.set_exception(e1.error)
            return
        for (_, fut), res in zip(batch, resp.results, strict=True):
            if not fut.done():
                fut.set_result(SendResult(res.msg_id, res.queue_id, res.queue_offset))

    async def _send_rpc(self, addr: str, topic: str, qid: int, msgs: list) -> Any:
        """Broker.SendMessage; ProxyError if the broker may have stored it, _NotStored if it did not."""
        req = broker_pb2.SendRequest(topic=topic, queue_id=qid, messages=msgs)
        for attempt in range(2):
            try:
                framed = self._framed_addr.get(addr) if self._framed is not None else None
                if framed:
                    return await self._framed.call(framed, "SendMessage", req, 10.0)
                return await self._send_stub(addr).SendMessage(req, timeout=10.0)
            except FramedCallError as e:
                err = _framed_error(e.info, addr)
                not_stored = e.info.not_stored
                retry = e.info.code == "UNAVAILABLE" and not_stored   # never written: its framed port is gone
                if retry:
                    self._framed_addr.pop(addr, None)  # gRPC until the routes announce the port again
            except grpc.aio.AioRpcError as e:
                err = _rpc_error(e, addr)
                not_stored = dict(e.trailing_metadata() or ()).get(STORED_KEY) == "0"
                retry = False
            if err.code in ("HA_NOT_AVAILABLE", "PROXY_TIMEOUT"):
                self._routes.clear()  # the master may have moved
            if not not_stored:
                raise err from None
            if attempt == 0 and retry:
                continue              # the same request over gRPC
            if attempt == 0 and err.code == "TOPIC_NOT_FOUND" and topic == TIMER_TOPIC:
                # the first scheduled message on this broker set: create its timer topic there
                await self._call(addr, broker_pb2_grpc.BrokerStub, "CreateTopic", broker_pb2.CreateTopicRequest(
                    config=common_pb2.TopicConfig(topic=TIMER_TOPIC, read_queues=1, write_queues=1, perm=6)))
                continue
            raise _NotStored(err) from None
        raise AssertionError("unreachable")

    def _send_stub(self, addr: str) -> Any:
        stub = self._stubs.get((addr, broker_pb2_grpc.BrokerStub))
        if stub is None:
            stub = self._stubs[(addr, broker_pb2_grpc.BrokerStub)] = broker_pb2_grpc.BrokerStub(self._channel(addr))
        return stub

    # ---- consume ----------------------------------------------------------------------------------

    async def receive(self, group: str, topic: str, broker: str, start_qid: int, batch: int, invisible_ms: int,
                      tags: set[str] | None, poll_ms: float) -> tuple[list[Received], int]:
        qs = await self.queues(topic)
        sets = sorted({b for b, _ in qs})
        bset = broker if broker in sets else sets[next(self._rr) % len(sets)]
        addr = await self._master(topic, bset)
        req = broker_pop_pb2.PopRequest(group=group, topic=topic, start_queue_id=max(0, start_qid), batch=batch,
                                        invisible_ms=invisible_ms, tags=sorted(tags or ()), poll_ms=int(poll_ms))
        resp = await self._call(addr, broker_pop_pb2_grpc.BrokerPopStub, "Pop", req, timeout=poll_ms / 1000 + 10)
        return [Received(_record(p.message), p.handle, p.attempt, p.visible_at_ms) for p in resp.messages], \
            resp.now_ms or int(time.time() * 1000)

    async def _by_handle(self, topic: str, handle: str) -> str:
        try:
            h = Handle.decode(handle)
        except PopError as e:
            raise ProxyError(e.code, str(e)) from None
        if h.topic != topic:
            raise ProxyError("INVALID_RECEIPT_HANDLE", f"receipt handle is for topic {h.topic!r}, not {topic!r}")
        return await self._master(topic, h.broker)

    async def ack_many(self, group: str, topic: str, handles: list[str]) -> list[ProxyError | None]:
        """Acks through lanes per (master, group, topic): concurrent AckMessage calls share PopAck calls."""
        out: list[ProxyError | None] = [None] * len(handles)
        loop = asyncio.get_running_loop()
        futs = []
        for i, h in enumerate(handles):
            try:
                addr = await self._by_handle(topic, h)
            except ProxyError as e:
                out[i] = e
                continue
            fut = loop.create_future()
            futs.append((i, fut))
            key = ("ack", addr, group, topic)
            if self._lanes.add(key, (h, fut), len(h), ACK_IN_FLIGHT):
                self._start_flight(key)
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("queued behind a busy lane: ack (%d waiting)", self._lanes.waiting(key))
        for i, fut in futs:
            try:
                out[i] = await fut
            except ProxyError as e:
                out[i] = e
        return out

    async def _ack_batch(self, key: tuple, batch: list) -> None:
        _, addr, group, topic = key
        r = await self._call(addr, broker_pop_pb2_grpc.BrokerPopStub, "PopAck", broker_pop_pb2.PopAckRequest(
            group=group, topic=topic, handles=[h for h, _ in batch]))
        for (_, fut), code, msg in zip(batch, r.codes, r.messages, strict=True):
            if not fut.done():
                fut.set_result(ProxyError(code, msg) if code else None)

    async def change_invisible(self, group: str, topic: str, handle: str, invisible_ms: int, now: int) -> str:
        addr = await self._by_handle(topic, handle)
        r = await self._call(addr, broker_pop_pb2_grpc.BrokerPopStub, "PopChangeInvisible",
                             broker_pop_pb2.PopChangeInvisibleRequest(group=group, topic=topic, handle=handle,
                                                                      invisible_ms=invisible_ms))
        return r.handle

    async def forward_to_dead_letter(self, group: str, topic: str, handle: str, attempts: int) -> None:
        addr = await self._by_handle(topic, handle)
        await self._call(addr, broker_pop_pb2_grpc.BrokerPopStub, "PopDeadLetter",
                         broker_pop_pb2.PopDeadLetterRequest(group=group, topic=topic, handle=handle,
                                                             attempts=attempts))

    # ---- pull and offsets (PullConsumer) -------------------------------------------------------------

    async def pull(self, group: str, topic: str, broker: str, qid: int, offset: int, batch: int,
                   tags: set[str] | None, poll_ms: float) -> tuple[str, list[Record], int]:
        addr = await self._master(topic, broker)
        req = broker_pb2.PullRequest(group=group, topic=topic, queue_id=qid, queue_offset=offset, max_messages=batch,
                                     long_poll_ms=int(poll_ms), tag_expression=" || ".join(sorted(tags or ())) or "*",
                                     commit_offset=-1)
        r = await self._call(addr, broker_pb2_grpc.BrokerStub, "PullMessage", req, timeout=poll_ms / 1000 + 10)
        if r.status == broker_pb2.PULL_FOUND and r.messages:
            return "OK", [_record(m) for m in r.messages], r.next_offset
        if r.status in (broker_pb2.PULL_OFFSET_MOVED, broker_pb2.PULL_OFFSET_ILLEGAL):
            return "ILLEGAL_OFFSET", [], r.next_offset
        return "MESSAGE_NOT_FOUND", [], r.next_offset

    async def update_offset(self, group: str, topic: str, broker: str, qid: int, offset: int) -> None:
        await self._call(await self._master(topic, broker), broker_pb2_grpc.BrokerStub, "CommitOffset",
                         broker_pb2.CommitOffsetRequest(group=group, topic=topic, queue_id=qid, offset=offset))

    async def get_offset(self, group: str, topic: str, broker: str, qid: int) -> int:
        r = await self._call(await self._master(topic, broker), broker_pb2_grpc.BrokerStub, "QueryOffset",
                             broker_pb2.QueryOffsetRequest(group=group, topic=topic, queue_id=qid))
        if r.offset < 0:
            raise ProxyError("OFFSET_NOT_FOUND", f"group {group!r} has no offset for queue {qid} of {topic!r}")
        return r.offset

    async def query_offset(self, topic: str, broker: str, qid: int, end: bool) -> int:
        r = await self._call(await self._master(topic, broker), broker_pb2_grpc.BrokerStub, "GetOffsetRange",
                             broker_pb2.GetOffsetRangeRequest(topic=topic, queue_id=qid))
        return r.max_offset if end else r.min_offset

    # ---- transactions -----------------------------------------------------------------------------
    # A transaction id through the proxy is "<broker set>/<id on that broker set>".

    async def send_half(self, topic: str, record: Record) -> SendResult:
        route = await self._route(topic)
        sets = sorted({q.broker_set for q in route.write_queues})
        if not sets:
            raise ProxyError("TOPIC_NOT_FOUND", f"topic {topic!r} has no writable queue on a live master")
        bset = sets[next(self._rr) % len(sets)]
        after_s = float(record.properties.get(PROP_TX_CHECK_S) or self.config.tx_check_after_s)
        m = common_pb2.Message(topic=topic, body=record.body, tags=record.tags, keys=record.keys,
                               properties=record.properties, msg_id=record.msg_id,
                               born_timestamp=record.born_timestamp, born_host=record.born_host)
        r = await self._call(route.masters[bset], broker_pop_pb2_grpc.BrokerPopStub, "TxPrepare",
                             broker_pop_pb2.TxPrepareRequest(message=m, check_after_ms=int(after_s * 1000)))
        return SendResult(r.msg_id, 0, 0, f"{bset}/{r.transaction_id}")

    async def end_transaction(self, topic: str, transaction_id: str, commit: bool) -> None:
        bset, sep, tx_id = transaction_id.partition("/")
        if not sep or not tx_id:
            raise ProxyError("INVALID_TRANSACTION_ID", f"transaction id {transaction_id!r} was not issued by this proxy")
        addr = await self._master(topic, bset)
        await self._call(addr, broker_pop_pb2_grpc.BrokerPopStub, "TxEnd",
                         broker_pop_pb2.TxEndRequest(transaction_id=tx_id, topic=topic, commit=commit))

    async def due_transactions(self, now: int) -> list[tuple[str, Record]]:
        info = await asyncio.to_thread(self.transport.call_namesrv, "GetClusterInfo",
                                       namesrv_pb2.GetClusterInfoRequest())
        out = []
        for c in info.clusters.values():
            for b in c.broker_sets:
                if not b.master_address:
                    continue
                try:
                    r = await self._call(b.master_address, broker_pop_pb2_grpc.BrokerPopStub, "TxDue",
                                         broker_pop_pb2.TxDueRequest(
                                             recheck_after_ms=int(self.config.tx_check_after_s * 1000),
                                             max_checks=self.config.tx_max_checks))
                except ProxyError as e:
                    log.warning("orphan check on %s failed: %s", b.broker_set, e.message)
                    continue
                out += [(f"{b.broker_set}/{t}", _record(m)) for t, m in zip(r.transaction_ids, r.messages, strict=True)]
        return out
