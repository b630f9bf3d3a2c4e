"""The cluster-mode proxy's framed connections to brokers (`remoting_listen`), on its event loop.

Owns: one framed TCP (optionally TLS) connection per broker framed address, opened on first use
with a HELLO and reopened after it breaks; calls matched to their replies by request id inside
`data_received` (no thread, no task per call); call deadlines (a timer per call). A send forwarded
this way costs the proxy and the broker no HTTP/2 framing: the same protobuf messages as
`Broker.SendMessage` travel in the frames of common/framing.py. The protocol's rules are
common/framing_conn.py's `ClientSide`; this module only moves bytes. Never: retries or routing
(cluster_backend.py decides), or logging per call.

A failed call raises `FramedCallError`: `info` is the broker's answer (an `orbitmq-error` name,
details, the master's address, whether nothing was stored), or, when the connection failed,
UNAVAILABLE / DEADLINE_EXCEEDED with `not_stored` true only if the request was never written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl as _ssl
import time
from typing import Any

from orbitmq.common import dial_map, framed_auth
from orbitmq.common.framing import DEFAULT_MAX_FRAME, ErrorInfo, FrameError
from orbitmq.common.framing_conn import ClientSide, Failed, HelloReply, LocalProtocolError, Reply
from orbitmq.common.framing_methods import BY_NAME
from orbitmq.common.net import split_addr

CONNECT_TIMEOUT_S = 3.0


class FramedCallError(Exception):
    """A framed call that failed; `info` says how (see the module docstring)."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.code}: {info.details}")
        self.info = info


def _unavailable(details: str, not_stored: bool = False) -> FramedCallError:
    return FramedCallError(ErrorInfo("UNAVAILABLE", details, "", not_stored))


class _Conn(asyncio.Protocol):
    """One framed connection: bytes in, replies handed to the futures of their calls."""

    def __init__(self, address: str, max_frame: int) -> None:
        self.address = address
        self.side = ClientSide(max_frame)
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, asyncio.Future] = {}
        self.hello: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            events = self.side.receive(data)
        except (FrameError, LocalProtocolError) as e:
            self._fail(f"malformed reply from {self.address}: {e}")
            return
        calls = self.calls
        for ev in events:
            if type(ev) is Reply:
                fut = calls.pop(ev.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev.payload)
            elif type(ev) is Failed:
                fut = calls.pop(ev.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_exception(FramedCallError(ev.error))
                elif not self.hello.done():
                    self.hello.set_exception(FramedCallError(ev.error))
            elif type(ev) is HelloReply and not self.hello.done():
                self.hello.set_result(ev.fields)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"framed connection to {self.address} lost: {exc or 'closed by the broker'}")

    def _fail(self, why: str) -> None:
        self.side.close(why)
        if self.transport is not None:
            self.transport.close()
        err = _unavailable(why)
        if not self.hello.done():
            self.hello.set_exception(err)
            self.hello.exception()   # retrieved here: _open may no longer be waiting for it
        calls, self.calls = self.calls, {}
        for fut in calls.values():
            if not fut.done():
                fut.set_exception(err)

    @property
    def open(self) -> bool:
        return self.side.closed is None and self.transport is not None and not self.transport.is_closing()


class FramedBrokers:
    """Framed connections to any number of brokers, keyed by framed address."""

    def __init__(self, ssl_context: _ssl.SSLContext | None = None, max_frame: int = DEFAULT_MAX_FRAME,
                 cluster_secret: bytes | None = None) -> None:
        """`cluster_secret`: each connection's HELLO proves it (a node: brokers with `auth_enabled`
        serve it, common/framed_auth.py)."""
        self.ssl_context = ssl_context
        self.max_frame = max_frame
        self.cluster_secret = cluster_secret
        self._conns: dict[str, _Conn] = {}
        self._opening: dict[str, asyncio.Future] = {}

    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        """`method` (a Broker RPC name of common/framing_methods.py) on the broker at framed `address`."""
        m = BY_NAME[method]
        conn = self._conns.get(address)
        if conn is None or not conn.open:
            conn = await self._connect(address, timeout)
        loop = asyncio.get_running_loop()
        try:
            rid, data = conn.side.request(m.code, request.SerializeToString())
        except LocalProtocolError as e:
            raise _unavailable(f"framed connection to {address}: {e}", not_stored=True) from None
        fut = loop.create_future()
        conn.calls[rid] = fut
        conn.transport.write(data)
        timer = loop.call_later(timeout, self._expire, conn, rid, fut, timeout)
        try:
            payload = await fut
        finally:
            timer.cancel()
            if not fut.done() or fut.cancelled():
                conn.calls.pop(rid, None)
                with contextlib.suppress(LocalProtocolError):
                    conn.side.abandon(rid)
        return m.response.FromString(payload)

    @staticmethod
    def _expire(conn: _Conn, rid: int, fut: asyncio.Future, timeout: float) -> None:
        if fut.done():
            return
        conn.calls.pop(rid, None)
        conn.side.abandon(rid)   # its late reply is dropped
        fut.set_exception(FramedCallError(ErrorInfo(
            "DEADLINE_EXCEEDED", f"no answer from {conn.address} within {timeout:.1f} s")))

    async def _connect(self, address: str, timeout: float) -> _Conn:
        """The open connection to `address`, made once however many calls wait for it."""
        opening = self._opening.get(address)
        if opening is None:
            opening = self._opening[address] = asyncio.ensure_future(self._open(address, timeout))
            opening.add_done_callback(lambda f: self._opened(address, f))
        return await asyncio.shield(opening)

    def _opened(self, address: str, f: asyncio.Future) -> None:
        self._opening.pop(address, None)
        if not f.cancelled():
            f.exception()   # retrieved: every caller waiting for it may have been cancelled

    async def _open(self, address: str, timeout: float) -> _Conn:
        host, port = split_addr(dial_map.resolve(address))
        loop = asyncio.get_running_loop()
        limit = max(0.05, min(timeout, CONNECT_TIMEOUT_S))
        conn = _Conn(address, self.max_frame)
        try:
            async with asyncio.timeout(limit):
                await loop.create_connection(lambda: conn, host, port, ssl=self.ssl_context,
                                             server_hostname=host if self.ssl_context is not None else None)
                fields = {} if not self.cluster_secret else framed_auth.node_fields(
                    self.cluster_secret, int(time.time() * 1000), os.urandom(framed_auth.NONCE_BYTES))
                conn.transport.write(conn.side.hello(**{"client": "orbitmq-proxy", **fields}))
                await conn.hello
        except FramedCallError as e:
            conn._fail("HELLO refused")
            raise _unavailable(f"{address} refused the HELLO: {e.info.code} {e.info.details}", not_stored=True) from None
        except (OSError, TimeoutError, ConnectionError) as e:
            conn._fail(f"connect failed: {e!r}")
            raise _unavailable(f"cannot open a framed connection to {address}: {e!r}", not_stored=True) from None
        self._conns[address] = conn
        return conn

    async def close(self) -> None:
        conns, self._conns = self._conns, {}
        for c in conns.values():
            if c.transport is not None:
                c.transport.close()
