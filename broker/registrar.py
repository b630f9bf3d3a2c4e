"""Registration of this broker with every name server, and a keep-alive stream to each.

Owns: one task per name server that registers on start, every `register_interval_s`, on
`register_now()` (topic changes, role changes) and when the name server asks (a keep-alive pong
with `register_needed`); and one task per name server holding the KeepAlive stream open (its
break makes the name server drop this broker at once). `stop()` unregisters everywhere. A name
server that is down is retried with a short backoff; it never stops the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import grpc

from orbitmq.common import dial_map
from orbitmq.common.logs import kv
from orbitmq.common.node_auth_grpc import signing_interceptors
from orbitmq.protos import namesrv_pb2, namesrv_pb2_grpc

log = logging.getLogger("orbitmq.broker.registrar")

RPC_TIMEOUT_S = 3.0
RETRY_S = 1.0


class _Target:
    """One name server: its channel, its wake-up event and its tasks."""

    def __init__(self, addr: str, secret: bytes | None = None) -> None:
        self.addr = addr
        self.channel = grpc.aio.insecure_channel(dial_map.resolve(addr), interceptors=signing_interceptors(secret))
        self.stub = namesrv_pb2_grpc.NameServerStub(self.channel)
        self.wake = asyncio.Event()      # register now
        self.ping_now = asyncio.Event()  # ping now (attaches the stream to a fresh registration)
        self.tasks: list[asyncio.Task] = []
        self.registered_once = False
        self.last_ok = 0.0


class Registrar:
    """Keeps this broker registered with every name server in `namesrv_addrs`."""

    def __init__(self, namesrv_addrs: list[str], build_request: Callable[[], namesrv_pb2.RegisterBrokerRequest],
                 identity: namesrv_pb2.BrokerIdentity, interval_s: float, keepalive_interval_s: float,
                 on_response: Callable[[str, namesrv_pb2.RegisterBrokerResponse], None] | None = None,
                 secret: bytes | None = None) -> None:
        self.addrs = list(namesrv_addrs)
        self.secret = secret   # the cluster secret: every call to a name server is signed with it
        self.build_request = build_request
        self.identity = identity
        self.interval_s = interval_s
        self.keepalive_interval_s = keepalive_interval_s
        self.on_response = on_response
        self._targets: list[_Target] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.registrations = 0  # successful RegisterBroker calls (status/tests)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for addr in self.addrs:
            t = _Target(addr, self.secret)
            t.tasks = [asyncio.create_task(self._register_loop(t)), asyncio.create_task(self._keepalive_loop(t))]
            self._targets.append(t)

    def register_now(self) -> None:
        """Re-register with every name server soon (safe from any thread)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            for t in self._targets:
                t.wake.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.register_now)

    async def wait_registered(self, timeout: float) -> bool:
        """True once every name server accepted at least one registration (or timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(t.registered_once for t in self._targets):
                return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self, unregister: bool = True) -> None:
        for t in self._targets:
            for task in t.tasks:
                task.cancel()
        for t in self._targets:
            for task in t.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if unregister:
            req = namesrv_pb2.UnregisterBrokerRequest(broker=self.identity)
            await asyncio.gather(*(self._unregister(t, req) for t in self._targets))
        for t in self._targets:
            await t.channel.close()
        self._targets = []

    async def _unregister(self, t: _Target, req: namesrv_pb2.UnregisterBrokerRequest) -> None:
        try:
            await t.stub.UnregisterBroker(req, timeout=1.0)
        except grpc.RpcError as e:
            log.warning("unregister failed %s", kv(namesrv=t.addr, error=e.code().name if hasattr(e, "code") else e))

    async def _register_loop(self, t: _Target) -> None:
        while True:
            t.wake.clear()
            ok = await self._register_once(t)
            timeout = self.interval_s if ok else min(RETRY_S, self.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(t.wake.wait(), timeout)

    async def _register_once(self, t: _Target) -> bool:
        req = self.build_request()
        try:
            resp = await t.stub.RegisterBroker(req, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.aio.AioRpcError) else None
            if t.registered_once or code is not grpc.StatusCode.UNAVAILABLE:
                log.warning("register failed %s", kv(namesrv=t.addr, code=getattr(code, "name", code),
                                                     details=e.details() if hasattr(e, "details") else ""))
            return False
        if not t.registered_once:
            log.info("registered %s", kv(namesrv=t.addr, master_id=resp.master_id, master=resp.master_address))
        t.registered_once = True
        t.ping_now.set()
        t.last_ok = time.monotonic()
        self.registrations += 1
        if self.on_response is not None:
            self.on_response(t.addr, resp)
        return True

    async def _keepalive_loop(self, t: _Target) -> None:
        while True:
            # a stream belongs to one identity: when the controller assigns this replica its id
            # (self.identity changes), the stream is reopened under it and the entry registered
            # under the old id is dropped, so no phantom replica stays in the routes
            opened_as = namesrv_pb2.BrokerIdentity()
            opened_as.CopyFrom(self.identity)
            ping = namesrv_pb2.KeepAlivePing(broker=opened_as)
            call = t.stub.KeepAlive()
            renamed = False
            try:
                while True:
                    if self.identity.broker_id != opened_as.broker_id:
                        renamed = True
                        break
                    await call.write(ping)
                    pong = await call.read()
                    if pong is grpc.aio.EOF:
                        break
                    if pong.register_needed:
                        t.wake.set()
                    t.ping_now.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(t.ping_now.wait(), self.keepalive_interval_s)
            except grpc.RpcError:
                pass
            finally:
                call.cancel()
            if renamed:
                await self._unregister(t, namesrv_pb2.UnregisterBrokerRequest(broker=opened_as))
                t.wake.set()
                continue
            await asyncio.sleep(RETRY_S)
