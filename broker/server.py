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
from orbitmq.broker.ha.replication_hooks import ReplicationHooks
from orbitmq.broker.metrics import broker_rows
from orbitmq.broker.registrar import Registrar
from orbitmq.broker.service import WireError, add_to_server
from orbitmq.common.logs import kv
from orbitmq.common.node_auth import load_secret
from orbitmq.common.observability import Observability
from orbitmq.protos import common_pb2, namesrv_pb2

log = logging.getLogger("orbitmq.broker")


class BrokerServer:
    """One broker replica: `await start()`, then `await stop()` (or `run_until_signal()`)."""

    def __init__(self, config: BrokerConfig, hooks: ReplicationHooks | None = None) -> None:
        self.config = config
        self.hooks: ReplicationHooks = hooks or ReplicationHooks()
        self.instance_id = uuid.uuid4().hex
        self.store: Any = None
        self.service: Any = None
        self.pops: Any = None  # PopService (broker/pop_grpc.py)
        self.timer: Any = None  # TimerService (broker/pop_grpc.py)
        self.tx: Any = None  # TxService (broker/pop_grpc.py)
        self.grpc_server: grpc.aio.Server | None = None
        self.registrar: Registrar | None = None
        self.obs: Observability | None = None
        self.port = 0
        self.stopping = False
        self._tasks: list[asyncio.Task] = []
        self._announced_topics: list[common_pb2.TopicConfig] = []  # in the last registration request

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
        # only the master writes its own records; followers/learners take the master's bytes only
        self.store.set_write_gate(lambda: self.hooks.is_master())
        from orbitmq.broker import pop_grpc  # pop consumption (proxy cluster mode): hook before open
        pop_grpc.attach(self)
        await loop.run_in_executor(None, self.store.open)
        await loop.run_in_executor(None, self.pops.load)
        await loop.run_in_executor(None, self.tx.load)
        self.service = BrokerService(self)
        self._attach_dispatch_listener()
        limit = cfg.max_request_size + MiB
        self.obs = Observability("broker", cfg.metrics_listen)
        self.grpc_server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0)], interceptors=[self.obs.observer])
        add_to_server(self.service, self.grpc_server)
        self.obs.attach(self.grpc_server, ["orbitmq.v1.Broker"], lambda: broker_rows(self))
        secret = load_secret(cfg.cluster_secret_file)
        pop_grpc.add_to_server(self)
        self.registrar = Registrar(cfg.namesrv, self.build_register_request, self.identity(),
                                   cfg.register_interval_s, cfg.keepalive_interval_s, self._on_register_response,
                                   secret=secret)
        # The hooks may add their own servicers to self.grpc_server (not started yet) and use the store.
        await self.hooks.start(self)
        self.port = self.grpc_server.add_insecure_port(cfg.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.listen}")
        await self.grpc_server.start()
        await self.obs.started()
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
        if self.obs is not None:
            await self.obs.stop()
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
        if self.timer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.timer.stop)
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
        topics = self._announced_topics = list(self.store_topics())
        return namesrv_pb2.RegisterBrokerRequest(
            broker=self.identity(), ha_address=self.hooks.ha_address() or c.ha_address,
            is_master=self.hooks.is_master(), epoch=self.hooks.epoch(), topics=topics,
            auto_create_topics=c.auto_create_topics, default_queues=c.default_queues,
            expire_after_ms=int(c.register_expire_s * 1000), writable=c.writable)

    def _on_register_response(self, namesrv: str, resp: namesrv_pb2.RegisterBrokerResponse) -> None:
        self.hooks.on_register_response(namesrv, resp.master_id, resp.master_address, resp.master_ha_address)

    def topics_changed(self) -> None:
        """Topic configs changed: tell every name server now."""
        if self.registrar is not None:
            self.registrar.register_now()

    # ---- the storage engine adapter ---------------------------------------------------------------
    # The one place that knows the store's record and metadata shapes.

    def _make_store(self) -> Any:
        from orbitmq.broker.store import MessageStore, StoreConfig
        from orbitmq.common.config import from_dict

        c = self.config
        data = {**c.store, "store_dir": c.store_dir, "flush_mode": c.flush_mode, "store_host": c.listen}
        return MessageStore(from_dict(StoreConfig, data, "[store]"))

    def _attach_dispatch_listener(self) -> None:
        self.store.add_dispatch_listener(self.service.waiters.notify_threadsafe)
        loop = asyncio.get_running_loop()
        # every replica (followers too) tells the name servers about topic changes as soon as it
        # holds them, so a topic survives its master's death in its first seconds (issue 8)
        self.store.add_topic_listener(lambda: loop.call_soon_threadsafe(self._topics_dispatched))

    def _topics_dispatched(self) -> None:
        if self.service is None or self.stopping:
            return
        self.service.reload_topics()
        if self.store_topics() != self._announced_topics:
            self.topics_changed()

    def store_topics(self) -> list[common_pb2.TopicConfig]:
        return [topic_from_dict(t, d) for t, d in sorted(self.store.list_topics().items())]

    async def store_put_topic(self, cfg: common_pb2.TopicConfig) -> None:
        d = {"read_queues": cfg.read_queues, "write_queues": cfg.write_queues, "perm": cfg.perm,
             "order": cfg.order, "attributes": dict(cfg.attributes)}
        await asyncio.get_running_loop().run_in_executor(None, self.store.put_topic_config, cfg.topic, d)

    async def store_delete_topic(self, topic: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.store.delete_topic, topic)

    async def store_put_group(self, cfg: common_pb2.SubscriptionGroupConfig) -> None:
        d = {"consume_enable": cfg.consume_enable, "broadcast_enable": cfg.broadcast_enable,
             "retry_max_times": cfg.retry_max_times, "attributes": dict(cfg.attributes)}
        await asyncio.get_running_loop().run_in_executor(None, self.store.put_subscription_group, cfg.group, d)

    async def store_delete_group(self, group: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.store.delete_subscription_group, group)

    def store_commit_offset(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        self.store.commit_offset(group, topic, queue_id, offset)

    def store_query_offset(self, group: str, topic: str, queue_id: int) -> int | None:
        return self.store.query_offset(group, topic, queue_id)

    def store_group_topics(self, group: str) -> set[str]:
        return {t for t, _ in self.store.offsets_of_group(group)}

    def store_confirm_offset(self) -> int:
        return int(self.store.confirm_offset)

    @staticmethod
    def status_name(res: Any) -> str:
        return str(res.status)

    def to_records(self, topic: str, queue_id: int, msgs: Any, peer: str) -> list[Any]:
        """Wire messages -> store records, checking what the store does not (body, topic match)."""
        from orbitmq.broker.store.record import Message

        max_size = self.config.max_message_size
        host = peer.partition(":")[2] if peer.startswith("ipv") else peer
        out = []
        for m in msgs:
            body = m.body
            n = len(body)
            if not n:
                raise WireError("BODY_EMPTY", f"message {len(out)} of the request has an empty body")
            if n > max_size:
                raise WireError("BODY_TOO_LARGE", f"message body of {n} bytes exceeds max_message_size {max_size}")
            if m.topic and m.topic != topic:
                raise WireError("BAD_REQUEST", f"message topic {m.topic!r} differs from the request's {topic!r}")
            out.append(Message(topic, body, queue_id, m.tags, list(m.keys) if m.keys else [],
                               dict(m.properties) if m.properties else {}, m.msg_id, m.flags, m.sys_flag,
                               m.born_timestamp, m.born_host or host, "", 0, m.reconsume_times))
        return out

    def store_put_batch_record(self, data: bytes, topic: str, queue_id: int) -> tuple[Any, bool]:
        """A producer-built batch record (broker/store/batch_record.py) into the store as one record,
        deduplicating a retry; the batch must be for the request's topic."""
        from orbitmq.broker.store import batch_record as br
        from orbitmq.broker.store.record import CodecError

        try:
            h = br.header(data)
            tb = bytes(data[br.HEADER_SIZE:br.HEADER_SIZE + h[br.B_TOPIC_LEN]])
        except Exception as e:  # noqa: BLE001 - too short to hold a header
            raise WireError("BAD_REQUEST", f"bad batch record: {e}") from None
        if tb != topic.encode():
            raise WireError("BAD_REQUEST", f"batch topic {tb!r} differs from the request's {topic!r}")
        try:
            return self.store.put_batch_record(data, queue_id, max_body=self.config.max_message_size)
        except CodecError as e:
            raise WireError("BAD_REQUEST", f"bad batch record: {e.reason}") from None

    @staticmethod
    def to_proto(m: Any, broker_set: str) -> common_pb2.Message:
        return common_pb2.Message(
            topic=m.topic, body=m.body, tags=m.tags, keys=m.keys, properties=m.properties, msg_id=m.msg_id,
            queue_id=m.queue_id, queue_offset=m.queue_offset, physical_offset=m.physical_offset,
            born_timestamp=m.born_timestamp, born_host=m.born_host, store_timestamp=m.store_timestamp,
            store_host=m.store_host, reconsume_times=m.reconsume_times, flags=m.flag, sys_flag=m.sys_flag,
            broker_set=broker_set)


def topic_from_dict(topic: str, d: dict[str, Any]) -> common_pb2.TopicConfig:
    return common_pb2.TopicConfig(topic=topic, read_queues=int(d.get("read_queues", 0)),
                                  write_queues=int(d.get("write_queues", 0)), perm=int(d.get("perm", 6)),
                                  order=bool(d.get("order", False)), attributes=d.get("attributes") or {})


def default_hooks(config: BrokerConfig) -> ReplicationHooks | None:
    """The HA hooks for `config.ha_mode` (broker/ha/role_manager.py), or None for standalone."""
    if getattr(config, "ha_mode", "standalone") == "standalone":
        return None
    from orbitmq.broker.ha.role_manager import make_hooks

    return make_hooks(config)


async def run(config: BrokerConfig, hooks: ReplicationHooks | None = None) -> None:
    """Run one broker until SIGTERM/SIGINT (HA hooks chosen by `ha_mode` unless given)."""
    await BrokerServer(config, hooks or default_hooks(config)).run_until_signal()
