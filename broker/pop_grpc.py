"""The broker's `BrokerPop` gRPC service: pop consumption for the proxy's cluster mode (and the
broker's timer for scheduled messages, started with it).

Owns: the thin adapter between `broker_pop.proto` and `PopService`/`PopPoller` (attached to the
broker by `attach(server)` before the store opens), refusing writes on a non-master (the pop
state changes are log records), reloading the pop state when this replica's master epoch
changes (a follower's in-memory state is rebuilt from its replicated index), and errors as gRPC
status + `orbitmq-error` (protocol Code names such as INVALID_RECEIPT_HANDLE, or broker codes).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import zlib
from typing import Any

import grpc

from orbitmq.broker.pop_core import PopError
from orbitmq.broker.pop_poll import PopPoller
from orbitmq.broker.pop_service import PROP_MSG_GROUP, PopService
from orbitmq.broker.timer_service import TimerService
from orbitmq.broker.tx_core import TxError
from orbitmq.broker.tx_service import TxService
from orbitmq.common.grpc_errors import clip
from orbitmq.protos import broker_pop_pb2 as pb
from orbitmq.protos import broker_pop_pb2_grpc as pbg

log = logging.getLogger("orbitmq.broker.pop")

DEFAULT_MAX_ATTEMPTS = 17
MAX_POLL_MS = 30_000


def attach(server: Any) -> PopService:
    """Create the PopService and the TimerService on `server.store` (call before the store opens)."""
    server.pops = PopService(server.store, server.config.broker_set)
    server.tx = TxService(server.store)
    server.timer = TimerService(server.store, can_write=lambda: server.hooks.is_master(), epoch=server.hooks.epoch)
    return server.pops


class BrokerPopService(pbg.BrokerPopServicer):
    def __init__(self, server: Any) -> None:
        self.server = server
        self.pops: PopService = server.pops
        self.poller = PopPoller(self.pops)
        self._epoch = server.hooks.epoch()
        self._rr = itertools.count()

    async def _check(self) -> None:
        """Master only; reload the state after a role/epoch change."""
        self.server.hooks.check_writable()
        epoch = self.server.hooks.epoch()
        if epoch != self._epoch:
            n = await asyncio.to_thread(self.pops.load)
            t = await asyncio.to_thread(self.server.tx.load)
            log.info("pop and transaction state reloaded for epoch %d (%d queues, %d open transactions)", epoch, n, t)
            self._epoch = epoch

    async def _abort(self, context, e: BaseException) -> None:
        if isinstance(e, PopError | TxError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, clip(str(e)),
                                trailing_metadata=(("orbitmq-error", e.code),))
        from orbitmq.broker.service import abort

        if getattr(e, "code", None) is None or not isinstance(getattr(e, "code", None), str):
            log.exception("pop request failed")
        await abort(context, e)

    async def Pop(self, request, context):  # noqa: N802
        try:
            await self._check()
            cfg = self.pops.store.get_topic_config(request.topic)
            if cfg is None:
                raise PopError("TOPIC_NOT_FOUND", f"topic {request.topic!r} does not exist on "
                               f"{self.server.config.broker_set}")
            n = max(int(cfg.get("read_queues", 1)), 1)
            order = [(request.start_queue_id + i) % n for i in range(n)]
            fifo, attempts = self.pops.group_settings(request.group, DEFAULT_MAX_ATTEMPTS)
            got, now = await self.poller.receive(request.group, request.topic, order, max(1, request.batch),
                                                 int(request.invisible_ms), attempts, fifo,
                                                 set(request.tags) or None, min(request.poll_ms, MAX_POLL_MS))
            to_proto = self.server.to_proto
            bset = self.server.config.broker_set
            return pb.PopResponse(now_ms=now, messages=[
                pb.PoppedMessage(message=to_proto(r.message, bset), handle=r.handle, attempt=r.attempt,
                                 visible_at_ms=r.visible_at) for r in got])
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def PopAck(self, request, context):  # noqa: N802
        try:
            await self._check()
            errs = await asyncio.to_thread(self.pops.ack_many, request.group, request.topic, list(request.handles))
            await self.server.hooks.wait_replicated(self.pops.store.max_physical_offset)  # acks survive a failover
            return pb.PopAckResponse(codes=[e.code if e else "" for e in errs],
                                     messages=[str(e) if e else "" for e in errs])
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def PopChangeInvisible(self, request, context):  # noqa: N802
        try:
            await self._check()
            h = await asyncio.to_thread(self.pops.change_invisible, request.group, request.topic, request.handle,
                                        int(request.invisible_ms), int(time.time() * 1000))
            await self.server.hooks.wait_replicated(self.pops.store.max_physical_offset)
            return pb.PopChangeInvisibleResponse(handle=h)
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def PopDeadLetter(self, request, context):  # noqa: N802
        try:
            await self._check()
            await asyncio.to_thread(self.pops.forward_to_dead_letter, request.group, request.topic, request.handle,
                                    max(1, request.attempts))
            await self.server.hooks.wait_replicated(self.pops.store.max_physical_offset)
            return pb.PopDeadLetterResponse()
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def GroupSettings(self, request, context):  # noqa: N802
        fifo, attempts = self.pops.group_settings(request.group, DEFAULT_MAX_ATTEMPTS)
        return pb.GroupSettingsResponse(fifo=fifo, max_attempts=attempts)


    # ---- transactions -----------------------------------------------------------------------------

    async def TxPrepare(self, request, context):  # noqa: N802
        try:
            await self._check()
            rec = self.server.to_records(request.message.topic, 0, [request.message], context.peer())[0]
            if self.pops.store.get_topic_config(rec.topic) is None:
                raise PopError("TOPIC_NOT_FOUND", f"topic {rec.topic!r} does not exist on "
                               f"{self.server.config.broker_set}")
            r = await asyncio.to_thread(self.server.tx.put_half, rec, int(time.time() * 1000),
                                        max(1000, request.check_after_ms))
            await self.server.hooks.wait_replicated(r.end_offset)
            return pb.TxPrepareResponse(transaction_id=r.msg_id, msg_id=r.msg_id)
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def TxEnd(self, request, context):  # noqa: N802
        try:
            await self._check()
            store = self.pops.store

            def put_real(m) -> None:
                cfg = store.get_topic_config(m.topic) or {}
                n = max(1, int(cfg.get("write_queues", 1)))
                group = m.properties.get(PROP_MSG_GROUP, "")
                m.queue_id = zlib.crc32(group.encode()) % n if group else next(self._rr) % n
                store.put(m)

            await asyncio.to_thread(self.server.tx.end, request.transaction_id, request.topic, request.commit, put_real)
            await self.server.hooks.wait_replicated(store.max_physical_offset)
            return pb.TxEndResponse()
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def TxDue(self, request, context):  # noqa: N802
        try:
            await self._check()
            due = await asyncio.to_thread(self.server.tx.due, int(time.time() * 1000),
                                          max(1000, request.recheck_after_ms), max(1, request.max_checks))
            bset = self.server.config.broker_set
            return pb.TxDueResponse(transaction_ids=[t for t, _m in due],
                                    messages=[self.server.to_proto(m, bset) for _t, m in due])
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)


def add_to_server(server: Any) -> None:
    """Serve BrokerPop on the broker's gRPC server (after the store is open)."""
    pbg.add_BrokerPopServicer_to_server(BrokerPopService(server), server.grpc_server)
    server.timer.start()  # fires scheduled messages while this replica is master
