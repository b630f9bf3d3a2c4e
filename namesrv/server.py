"""The name server's gRPC shell: `NameServer` service over the pure `RouteTable`.

Owns: converting protos to and from the route table's plain values, the keep-alive streams, the
periodic expiry sweep and the process lifecycle (`serve`). It reads the clock (monotonic seconds)
and hands it to the table; it never decides routing rules itself. `serve` accepts extra service
hooks so other services (the embedded controller) can share the process, event loop and port.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

import grpc

from orbitmq.common import tls as tlsmod
from orbitmq.common.error_codes import ErrorCode
from orbitmq.common.gc_freeze import freeze_startup_objects
from orbitmq.common.grpc_errors import MalformedRequestGuard, abort
from orbitmq.common.limits_grpc import InflightLimiter
from orbitmq.common.logs import kv
from orbitmq.common.metrics import Row
from orbitmq.common.node_auth import load_secret
from orbitmq.common.node_auth_grpc import NodeAuthInterceptor
from orbitmq.common.observability import Observability
from orbitmq.common.tls_grpc import add_port
from orbitmq.controller.node_methods import CONTROLLER_NODE_METHODS, CONTROLLER_SERVICE
from orbitmq.namesrv.config import NamesrvConfig
from orbitmq.namesrv.routes import (
    BrokerSetInfo,
    Registration,
    RouteTable,
    StaleEpochError,
    TopicInfo,
    TopicNotFoundError,
)
from orbitmq.namesrv.voucher import MasterVoucher
from orbitmq.protos import namesrv_pb2, namesrv_pb2_grpc

log = logging.getLogger("orbitmq.namesrv")

SERVICE = namesrv_pb2.DESCRIPTOR.services_by_name["NameServer"].full_name
NODE_METHODS = ("RegisterBroker", "UnregisterBroker", "KeepAlive")   # signed by brokers (cluster secret)

# A hook adds services to the server before it starts; it may return an async stop function.
ServiceHook = Callable[[grpc.aio.Server], Awaitable[Callable[[], Awaitable[None]] | None]]


def registration_from_proto(req: namesrv_pb2.RegisterBrokerRequest) -> Registration:
    b = req.broker
    return Registration(
        cluster=b.cluster, broker_set=b.broker_set, broker_id=b.broker_id, address=b.address,
        instance_id=b.instance_id, ha_address=req.ha_address, is_master=req.is_master, epoch=req.epoch,
        topics=tuple(TopicInfo(t.topic, t.read_queues, t.write_queues, t.perm, t.order) for t in req.topics),
        auto_create_topics=req.auto_create_topics, default_queues=req.default_queues,
        expire_after_s=req.expire_after_ms / 1000.0, writable=req.writable,
        remoting_address=req.remoting_address,
    )


def set_to_proto(info: BrokerSetInfo) -> namesrv_pb2.BrokerSetData:
    return namesrv_pb2.BrokerSetData(
        cluster=info.cluster, broker_set=info.broker_set, replicas=info.replicas,
        master_id=info.master_id, master_address=info.master_address, epoch=info.epoch,
        remoting_addresses=info.remoting)


class NameServerService(namesrv_pb2_grpc.NameServerServicer):
    """The `NameServer` gRPC service; all state is in `self.table`."""

    def __init__(self, config: NamesrvConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.table = RouteTable(default_expire_s=config.expire_after_s)
        self.clock = clock
        self.secret = load_secret(config.cluster_secret_file)
        self.voucher = MasterVoucher(config.controllers, tls=tlsmod.from_config(config)) if config.controllers else None

    async def RegisterBroker(self, request, context):  # noqa: N802 - gRPC method name
        b = request.broker
        if not b.broker_set or not b.address:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST",
                         "broker.broker_set and broker.address are required")
        if request.is_master and self.voucher is not None:
            why = await self.voucher.check(b.cluster, b.broker_set, b.broker_id, request.epoch)
            if why is not None:
                log.warning("refused master claim %s", kv(broker_set=b.broker_set, broker_id=b.broker_id,
                                                          epoch=request.epoch, why=why[:200]))
                await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "STALE_EPOCH", why)
        was_known = (b.broker_set, b.broker_id) in {(r.broker_set, r.broker_id) for r in self.table.alive(self.clock())}
        try:
            if request.topics_delta:
                info = self.table.register_delta(registration_from_proto(request), tuple(request.deleted_topics),
                                                 self.clock())
                if info is None:
                    return namesrv_pb2.RegisterBrokerResponse(master_id=-1, full_registration_needed=True)
            else:
                info = self.table.register(registration_from_proto(request), self.clock())
        except StaleEpochError as e:
            log.warning("rejected stale master: %s", e)
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "STALE_EPOCH", str(e))
        if not was_known:
            log.info("broker registered %s", kv(cluster=b.cluster, broker_set=b.broker_set, broker_id=b.broker_id,
                                                addr=b.address, master=request.is_master, epoch=request.epoch,
                                                topics=len(request.topics)))
        return namesrv_pb2.RegisterBrokerResponse(
            master_address=info.master_address, master_ha_address=info.master_ha_address, master_id=info.master_id)

    async def UnregisterBroker(self, request, context):  # noqa: N802
        b = request.broker
        if self.table.unregister(b.broker_set, b.broker_id, self.clock(), b.instance_id):
            log.info("broker unregistered %s", kv(broker_set=b.broker_set, broker_id=b.broker_id))
        return namesrv_pb2.UnregisterBrokerResponse()

    async def KeepAlive(self, request_iterator, context) -> AsyncIterator[namesrv_pb2.KeepAlivePong]:  # noqa: N802
        ident: tuple[str, int, str] | None = None
        token = 0
        try:
            async for ping in request_iterator:
                b = ping.broker
                if ident is None:
                    ident = (b.broker_set, b.broker_id, b.instance_id)
                    token, need = self.table.stream_opened(*ident)
                else:
                    need = self.table.stream_attach(*ident, token)
                yield namesrv_pb2.KeepAlivePong(server_time_ms=int(time.time() * 1000), register_needed=need)
        finally:
            if ident is not None and self.table.stream_closed(*ident, token):
                log.info("keep-alive stream broke: broker dropped %s", kv(broker_set=ident[0], broker_id=ident[1]))

    async def GetTopicRoute(self, request, context):  # noqa: N802
        try:
            r = self.table.route(request.topic, self.clock())
        except TopicNotFoundError as e:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "TOPIC_NOT_FOUND", str(e))
        return namesrv_pb2.TopicRoute(
            topic=r.topic, auto_created=r.auto_created,
            queues=[namesrv_pb2.QueueData(broker_set=q.broker_set, read_queues=q.read_queues,
                                          write_queues=q.write_queues, perm=q.perm) for q in r.queues],
            broker_sets=[set_to_proto(s) for s in r.broker_sets])

    async def GetClusterInfo(self, request, context):  # noqa: N802
        out = namesrv_pb2.ClusterInfo()
        for cluster, sets in self.table.cluster_info(self.clock()).items():
            out.clusters[cluster].broker_sets.extend(set_to_proto(s) for s in sets)
        return out

    async def GetTopicList(self, request, context):  # noqa: N802
        return namesrv_pb2.TopicList(topics=self.table.topics(self.clock(), request.cluster))

    async def sweep_forever(self) -> None:
        """Drop expired replicas every scan interval (queries also expire lazily)."""
        while True:
            await asyncio.sleep(self.config.scan_interval_s)
            for bset, bid in self.table.expire(self.clock()):
                log.info("broker expired %s", kv(broker_set=bset, broker_id=bid))

    async def refresh_controllers_forever(self) -> None:
        """Follow the controllers' membership (admin controller add-node/remove-node)."""
        while self.voucher is not None:
            await asyncio.sleep(self.config.controller_refresh_s)
            await self.voucher.refresh()


def namesrv_rows(service: NameServerService) -> Iterator[Row]:
    """Gauges at scrape time: live replicas, topics, and each broker set's routed master epoch."""
    now = service.clock()
    alive = service.table.alive(now)
    yield "orbitmq_namesrv_brokers", "live broker replicas registered", {}, len(alive)
    yield "orbitmq_namesrv_topics", "topics routed", {}, len(service.table.topics(now, ""))
    for cluster, sets in service.table.cluster_info(now).items():
        for s in sets:
            yield ("orbitmq_namesrv_master_epoch", "epoch of the master producers are routed to",
                   {"cluster": cluster, "broker_set": s.broker_set}, s.epoch)


async def _abort(context: grpc.aio.ServicerContext, status: grpc.StatusCode, code: str, details: str) -> None:
    await abort(context, ErrorCode(code), details, status=status)


async def serve(config: NamesrvConfig, hooks: Sequence[ServiceHook] = (),
                started: Callable[[NameServerService], None] | None = None) -> None:
    """Run the name server (and any hooked services) until SIGTERM/SIGINT, then stop cleanly."""
    tls = tlsmod.from_config(config)
    log.info(tlsmod.mode_line(tls, "name server" + (" and embedded controller" if hooks else ""), config.listen))
    obs = Observability("namesrv", config.metrics_listen)
    service = NameServerService(config)
    # brokers' writes must be signed with the cluster secret; an embedded controller's broker-facing
    # and admin-write methods too (they share this server and its secret)
    protected = {f"/{SERVICE}/{m}" for m in NODE_METHODS} | {f"/{CONTROLLER_SERVICE}/{m}" for m in CONTROLLER_NODE_METHODS}
    limiter = InflightLimiter(config.max_inflight_per_connection, config.max_inflight_requests)
    server = grpc.aio.server(interceptors=[MalformedRequestGuard(), obs.observer, limiter,
                                          NodeAuthInterceptor(service.secret, protected, log)])
    namesrv_pb2_grpc.add_NameServerServicer_to_server(service, server)
    obs.attach(server, [SERVICE], lambda: namesrv_rows(service))
    stops: list[Callable[[], Awaitable[None]]] = []
    for hook in hooks:
        stop = await hook(server)
        if stop is not None:
            stops.append(stop)
    if add_port(server, config.listen, tls) == 0:
        raise OSError(f"cannot listen on {config.listen}")
    await server.start()
    await obs.started()
    sweeper = asyncio.create_task(service.sweep_forever())
    refresher = asyncio.create_task(service.refresh_controllers_forever())
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    log.info("namesrv listening %s", kv(addr=config.listen, expire_after_s=config.expire_after_s,
                                         brokers_signed=bool(service.secret), masters_vouched=bool(service.voucher)))
    if service.secret is None:
        log.warning("broker registrations are NOT authenticated (no cluster_secret_file): anyone who reaches "
                    "%s can register a broker and redirect producers", config.listen)
    if started is not None:
        started(service)
    freeze_startup_objects()      # (common/gc_freeze.py: no full collection walks them again)
    try:
        await stop_event.wait()
    finally:
        log.info("namesrv stopping")
        await obs.stop()
        sweeper.cancel()
        refresher.cancel()
        await server.stop(grace=1.0)
        if service.voucher is not None:
            await service.voucher.close()
        for stop in reversed(stops):
            await stop()
        log.info("namesrv stopped")
