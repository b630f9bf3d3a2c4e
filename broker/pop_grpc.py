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
import logging
import time
from typing import Any

import grpc

from orbitmq.broker.pop_core import PopError
from orbitmq.broker.pop_poll import PopPoller
from orbitmq.broker.pop_service import PopService
from orbitmq.broker.timer_service import TimerService
from orbitmq.protos import broker_pop_pb2 as pb
from orbitmq.protos import broker_pop_pb2_grpc as pbg

log = logging.getLogger("orbitmq.broker.pop")

DEFAULT_MAX_ATTEMPTS = 17
MAX_POLL_MS = 30_000


def attach(server: Any) -> PopService:
    """Create the PopService and the TimerService on `server.store` (call before the store opens)."""
    server.pops = PopService(server.store, server.config.broker_set)
    server.timer = TimerService(server.store, can_write=lambda: server.hooks.is_master(), epoch=server.hooks.epoch)
    return server.pops


class BrokerPopService(pbg.BrokerPopServicer):
    def __init__(self, server: Any) -> None:
        self.server = server
        self.pops: PopService = server.pops
        self.poller = PopPoller(self.pops)
        self._epoch = server.hooks.epoch()

    async def _check(self) -> None:
        """Master only; reload the state after a role/epoch change."""
        self.server.hooks.check_writable()
        epoch = self.server.hooks.epoch()
        if epoch != self._epoch:
            n = await asyncio.to_thread(self.pops.load)
            log.info("pop state reloaded for epoch %d (%d queues)", epoch, n)
            self._epoch = epoch

    async def _abort(self, context, e: BaseException) -> None:
        if isinstance(e, PopError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e), trailing_metadata=(("orbitmq-error", e.code),))
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
            return pb.PopAckResponse(codes=[e.code if e else "" for e in errs],
                                     messages=[str(e) if e else "" for e in errs])
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def PopChangeInvisible(self, request, context):  # noqa: N802
        try:
            await self._check()
            h = await asyncio.to_thread(self.pops.change_invisible, request.group, request.topic, request.handle,
                                        int(request.invisible_ms), int(time.time() * 1000))
            return pb.PopChangeInvisibleResponse(handle=h)
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def PopDeadLetter(self, request, context):  # noqa: N802
        try:
            await self._check()
            await asyncio.to_thread(self.pops.forward_to_dead_letter, request.group, request.topic, request.handle,
                                    max(1, request.attempts))
            return pb.PopDeadLetterResponse()
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)

    async def GroupSettings(self, request, context):  # noqa: N802
        fifo, attempts = self.pops.group_settings(request.group, DEFAULT_MAX_ATTEMPTS)
        return pb.GroupSettingsResponse(fifo=fifo, max_attempts=attempts)


def add_to_server(server: Any) -> None:
    """Serve BrokerPop on the broker's gRPC server (after the store is open)."""
    pbg.add_BrokerPopServicer_to_server(BrokerPopService(server), server.grpc_server)
    server.timer.start()  # fires scheduled messages while this replica is master
