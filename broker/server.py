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
from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store.record import CodecError
from orbitmq.broker.store.record import Message as StoreMessage
from orbitmq.common import tls as tlsmod
from orbitmq.common.gc_freeze import freeze_startup_objects
from orbitmq.common.grpc_errors import MalformedRequestGuard
from orbitmq.common.limits_grpc import InflightLimiter
from orbitmq.common.logs import kv
from orbitmq.common.node_auth import load_secret
from orbitmq.common.observability import Observability
from orbitmq.common.tls_grpc import add_port
from orbitmq.protos import common_pb2, namesrv_pb2

log = logging.getLogger("orbitmq.broker")

PUBLISH_WAIT_S = 3.0   # how long a topic change waits for the name servers to have it


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
        # framed protocol (broker/remoting.py), when `remoting_listen` is set. Security hooks, set
        # before start(): an ssl.SSLContext wrapping every accepted stream, and an authenticate
        # callable given each connection's HELLO fields (see RemotingServer).
        self.remoting: Any = None
        self.remoting_address = ""
        self.remoting_ssl: Any = None
        self.registrar: Registrar | None = None
        self.obs: Observability | None = None
        self.limiter: InflightLimiter | None = None
        self.auth: Any = None         # RequestAuthInterceptor when auth_enabled (broker/auth.py)
        self.auth_cache: Any = None
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
        tls = tls_of(cfg)
        if self.remoting_ssl is None:   # the framed port serves TLS whenever the gRPC port does
            self.remoting_ssl = tlsmod.server_ssl_context(tls)
        ha = f" and replication ({cfg.ha_listen})" if cfg.ha_mode == "controller" else ""
        log.info(tlsmod.mode_line(tls, "broker gRPC" + ha, cfg.listen))
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
        from orbitmq.broker.auth import start_auth
        self.auth, self.auth_cache = await start_auth(cfg)   # user request signatures + ACL (auth_enabled)
        self.limiter = InflightLimiter(cfg.max_inflight_per_connection, cfg.max_inflight_requests)
        self.grpc_server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0)], interceptors=[MalformedRequestGuard(), self.obs.observer, self.limiter,
                                                     *([self.auth] if self.auth else [])])
        add_to_server(self.service, self.grpc_server)
        self.obs.attach(self.grpc_server, ["orbitmq.v1.Broker"], lambda: broker_rows(self))
        secret = load_secret(cfg.cluster_secret_file)
        pop_grpc.add_to_server(self)
        self.registrar = Registrar(cfg.namesrv, self.build_register_request, self.identity(),
                                   cfg.register_interval_s, cfg.keepalive_interval_s, self._on_register_response,
                                   secret=secret, tls=tls)
        # The hooks may add their own servicers to self.grpc_server (not started yet) and use the store.
        await self.hooks.start(self)
        self.port = add_port(self.grpc_server, cfg.listen, tls)
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.listen}")
        await self.grpc_server.start()
        if cfg.remoting_listen:
            await self._start_remoting()
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
        with contextlib.suppress(Exception):
            await self.hooks.before_stop()   # an HA master hands off first, while still serving
        if self.obs is not None:
            await self.obs.stop()
        for t in self._tasks:
            t.cancel()
        if self.registrar is not None:
            await self.registrar.stop(unregister=True)
        if self.service is not None:
            self.service.waiters.wake_all()
        if self.remoting is not None:
            await self.remoting.stop()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=2.0)
        with contextlib.suppress(Exception):
            await self.hooks.stop()
        if self.auth_cache is not None:
            await self.auth_cache.stop()
        if self.timer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.timer.stop)
        if self.store is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
        log.info("broker stopped")

    async def _start_remoting(self) -> None:
        from orbitmq.broker.remoting import RemotingServer
        from orbitmq.broker.remoting_auth import FramedAuth
        from orbitmq.common.net import split_addr

        cfg = self.config
        self.remoting = RemotingServer(self.service, max_frame=cfg.max_request_size + MiB,
                                       max_in_flight=cfg.remoting_max_in_flight, ssl=self.remoting_ssl,
                                       auth=FramedAuth(self.auth) if self.auth is not None else None,
                                       held_work=(self.store.hold_dispatch, self.store.run_held_dispatch))
        port = await self.remoting.start(cfg.remoting_listen)
        host = split_addr(cfg.remoting_listen)[0]
        if host in ("", "0.0.0.0", "::"):
            host = split_addr(cfg.listen)[0]   # announce the host clients already reach for gRPC
        self.remoting_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        log.info("framed protocol listening %s", kv(addr=self.remoting_address, tls=self.remoting_ssl is not None,
                                                    auth=self.auth is not None))

    async def run_until_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        freeze_startup_objects()      # (common/gc_freeze.py: no full collection walks them again)
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

    def build_register_request(self, changed: set[str] | None = None) -> namesrv_pb2.RegisterBrokerRequest:
        """Every topic (`changed` None), or a delta of the `changed` topics: their configs, or their
        names in `deleted_topics` when they no longer exist."""
        c = self.config
        deleted: list[str] = []
        if changed is None:
            topics = self.store_topics()
        else:
            topics = []
            for name in sorted(changed):
                d = self.store.get_topic_config(name)
                if d is None:
                    deleted.append(name)
                else:
                    topics.append(topic_from_dict(name, d))
        return namesrv_pb2.RegisterBrokerRequest(
            broker=self.identity(), ha_address=self.hooks.ha_address() or c.ha_address,
            is_master=self.hooks.is_master(), epoch=self.hooks.epoch(), topics=topics,
            auto_create_topics=c.auto_create_topics, default_queues=c.default_queues,
            expire_after_ms=int(c.register_expire_s * 1000), writable=c.writable,
            topics_delta=changed is not None, deleted_topics=deleted, remoting_address=self.remoting_address)

    def _on_register_response(self, namesrv: str, resp: namesrv_pb2.RegisterBrokerResponse) -> None:
        self.hooks.on_register_response(namesrv, resp.master_id, resp.master_address, resp.master_ha_address)

    def topics_changed(self, names: set[str] | None = None) -> None:
        """Topic configs changed (these, or None: any): tell every name server now."""
        if self.registrar is not None:
            self.registrar.register_now(names)

    async def topics_published(self, timeout: float = PUBLISH_WAIT_S) -> bool:
        """After `topics_changed()`: wait until every name server has the change (bounded)."""
        if self.registrar is None:
            return True
        return await self.registrar.published(timeout)

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
        self.store.add_topic_listener(lambda names: loop.call_soon_threadsafe(self._topics_dispatched, names))

    def _topics_dispatched(self, names: set[str] | None) -> None:
        if self.service is None or self.stopping:
            return
        self.service.reload_topics(names)
        self.topics_changed(names)

    def store_topic(self, name: str) -> common_pb2.TopicConfig | None:
        d = self.store.get_topic_config(name)
        return None if d is None else topic_from_dict(name, d)

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
            out.append(StoreMessage(topic, body, queue_id, m.tags, list(m.keys) if m.keys else [],
                               dict(m.properties) if m.properties else {}, m.msg_id, m.flags, m.sys_flag,
                               m.born_timestamp, m.born_host or host, "", 0, m.reconsume_times))
        return out

    def store_put_batch_record(self, data: bytes | memoryview, topic: str, queue_id: int) -> tuple[Any, bool]:
        """A producer-built batch record (broker/store/batch_record.py) into the store as one record,
        deduplicating a retry; the batch must be for the request's topic."""
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


def tls_of(config: BrokerConfig) -> tlsmod.TlsConfig:
    """The broker's TLS: its gRPC port, and how it dials name servers, controllers and masters."""
    return tlsmod.from_config(config)


def default_hooks(config: BrokerConfig) -> ReplicationHooks | None:
    """The HA hooks for `config.ha_mode` (broker/ha/role_manager.py), or None for standalone."""
    if getattr(config, "ha_mode", "standalone") == "standalone":
        return None
    from orbitmq.broker.ha.role_manager import make_hooks

    return make_hooks(config)


async def run(config: BrokerConfig, hooks: ReplicationHooks | None = None) -> None:
    """Run one broker until SIGTERM/SIGINT (HA hooks chosen by `ha_mode` unless given)."""
    await BrokerServer(config, hooks or default_hooks(config)).run_until_signal()
