"""The broker process: store + gRPC server + name server registrar + clean shutdown.

Owns: the lifecycle (open the store, start the replication hooks, serve gRPC, register with every
name server; on SIGTERM unregister, stop serving, stop the hooks, flush and close the store) and
the thin adapter between the wire protos and the storage engine's records. It never implements
storage, routing or replication rules itself.

HA: pass `hooks=` (a `ReplicationHooks` subclass) or call `set_hooks()` before `start()`; hooks
call `server.registrar.register_now()` on role changes and may use `server.store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from typing import Any

import grpc

from orbitmq.broker.config import BrokerConfig, MiB
from orbitmq.broker.registrar import Registrar
from orbitmq.broker.replication_hooks import ReplicationHooks
from orbitmq.common.logs import kv
from orbitmq.protos import broker_pb2_grpc, common_pb2, namesrv_pb2

log = logging.getLogger("orbitmq.broker")


class BrokerServer:
    """One broker replica: `await start()`, then `await stop()` (or `run_until_signal()`)."""

    def __init__(self, config: BrokerConfig, hooks: ReplicationHooks | None = None) -> None:
        self.config = config
        self.hooks: ReplicationHooks = hooks or ReplicationHooks()
        self.instance_id = uuid.uuid4().hex
        self.store: Any = None
        self.service: Any = None
        self.grpc_server: grpc.aio.Server | None = None
        self.registrar: Registrar | None = None
        self.port = 0
        self.stopping = False
        self._tasks: list[asyncio.Task] = []

    def set_hooks(self, hooks: ReplicationHooks) -> None:
        """Swap in the replication hooks (before start())."""
        if self.grpc_server is not None:
            raise RuntimeError("set_hooks() must be called before start()")
        self.hooks = hooks

    # ---- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        from orbitmq.broker.service import BrokerService

        cfg = self.config
        loop = asyncio.get_running_loop()
        self.store = self._make_store()
        await loop.run_in_executor(None, self.store.open)
        self.service = BrokerService(self)
        self._attach_dispatch_listener()
        limit = cfg.max_request_size + MiB
        self.grpc_server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0)])
        broker_pb2_grpc.add_BrokerServicer_to_server(self.service, self.grpc_server)
        self.registrar = Registrar(cfg.namesrv, self.build_register_request, self.identity(),
                                   cfg.register_interval_s, cfg.keepalive_interval_s, self._on_register_response)
        # The hooks may add their own servicers to self.grpc_server (not started yet) and use the store.
        await self.hooks.start(self)
        self.port = self.grpc_server.add_insecure_port(cfg.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.listen}")
        await self.grpc_server.start()
        await self.registrar.start()
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        log.info("broker listening %s", kv(addr=cfg.listen, cluster=cfg.cluster, broker_set=cfg.broker_set,
                                            broker_id=cfg.broker_id, role=self.hooks.role(),
                                            epoch=self.hooks.epoch(), store=cfg.store_dir,
                                            flush=cfg.flush_mode, namesrv=",".join(cfg.namesrv) or "-"))

    async def stop(self) -> None:
        """Unregister, stop serving (answering parked pulls), stop the hooks, flush and close the store."""
        if self.stopping:
            return
        self.stopping = True
        log.info("broker stopping")
        for t in self._tasks:
            t.cancel()
        if self.registrar is not None:
            await self.registrar.stop(unregister=True)
        if self.service is not None:
            self.service.waiters.wake_all()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=2.0)
        with contextlib.suppress(Exception):
            await self.hooks.stop()
        if self.store is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
        log.info("broker stopped")

    async def run_until_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for group, cid in self.service.groups.expire(time.monotonic()):
                log.info("consumer expired group=%s client=%s", group, cid)
            if not self.hooks.is_master():
                self.service.reload_topics()  # a follower learns topic changes by replication

    # ---- registration -----------------------------------------------------------------------------

    def identity(self) -> namesrv_pb2.BrokerIdentity:
        c = self.config
        return namesrv_pb2.BrokerIdentity(cluster=c.cluster, broker_set=c.broker_set, broker_id=c.broker_id,
                                          address=c.listen, instance_id=self.instance_id)

    def build_register_request(self) -> namesrv_pb2.RegisterBrokerRequest:
        c = self.config
        return namesrv_pb2.RegisterBrokerRequest(
            broker=self.identity(), ha_address=self.hooks.ha_address() or c.ha_address,
            is_master=self.hooks.is_master(), epoch=self.hooks.epoch(), topics=list(self.store_topics()),
            auto_create_topics=c.auto_create_topics, default_queues=c.default_queues,
            expire_after_ms=int(c.register_expire_s * 1000), writable=c.writable)

    def _on_register_response(self, namesrv: str, resp: namesrv_pb2.RegisterBrokerResponse) -> None:
        self.hooks.on_register_response(namesrv, resp.master_id, resp.master_address, resp.master_ha_address)

    def topics_changed(self) -> None:
        """Topic configs changed: tell every name server now."""
        if self.registrar is not None:
            self.registrar.register_now()

    # ---- the storage engine adapter ---------------------------------------------------------------
    # Everything below is the one place that knows the store's record and metadata shapes.

    def _make_store(self) -> Any:
        raise NotImplementedError

    def _attach_dispatch_listener(self) -> None:
        raise NotImplementedError

    def store_topics(self) -> list[common_pb2.TopicConfig]:
        raise NotImplementedError


def default_hooks(config: BrokerConfig) -> ReplicationHooks | None:
    """The HA hooks for `config.ha_mode` (broker/role_manager.py), or None for standalone."""
    if getattr(config, "ha_mode", "standalone") == "standalone":
        return None
    from orbitmq.broker.role_manager import make_hooks

    return make_hooks(config)


async def run(config: BrokerConfig, hooks: ReplicationHooks | None = None) -> None:
    """Run one broker until SIGTERM/SIGINT (HA hooks chosen by `ha_mode` unless given)."""
    await BrokerServer(config, hooks or default_hooks(config)).run_until_signal()
