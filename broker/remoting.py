"""The broker's framed TCP port (`remoting_listen`): the same Broker RPCs as gRPC, without HTTP/2.

Owns: the asyncio shell of the framed protocol on the broker: accepting connections (optionally
through an `ssl.SSLContext`), feeding bytes to `common/framing_conn.ServerSide`, running each
request through the very `BrokerService` method gRPC calls (so validation, dedup, replication
waits and errors are the same), and writing the replies. A method that finishes without waiting
(a standalone or async-flush send, a pull that finds messages) is answered inside the same
`data_received` call, with no task and no executor hop; one that has to wait (sync flush,
replication, long poll) continues as a task and is answered when it ends, in any order.
Never: rules of its own (they are the service's), or logging per request.

Security: `ssl=` wraps every accepted stream (TLS, `asyncio.start_server(ssl=...)` style). With
`auth=` (broker/remoting_auth.py, `auth_enabled`), every connection must start with a signed HELLO
(nothing else is served before it; a refused one is answered with the refusal, then the connection
is closed) and each request is checked against the identity it proved before the service runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from orbitmq.common import framing
from orbitmq.common.framing import ErrorInfo, FrameError
from orbitmq.common.framing_conn import Hello, LocalProtocolError, ServerSide
from orbitmq.common.framing_methods import BY_CODE, Method
from orbitmq.common.grpc_errors import ERROR_KEY, MASTER_KEY
from orbitmq.common.net import split_addr
from orbitmq.common.proto_tail import split_tail

log = logging.getLogger("orbitmq.broker.remoting")

STORED_KEY = "orbitmq-stored"   # broker/service.py's trailing metadata key: "0" = nothing was stored
LOG_BYTES = 200                 # what a log line quotes of a peer's bad input, at most
TAIL_MIN = 64 * 1024            # a SendMessage this large passes its batch record apart (see send_apart)
SEND_BATCH_FIELD = 5            # SendRequest.batch (protos/broker.proto)



class _Abort(Exception):  # noqa: N818 - the servicer's context.abort(), as an exception
    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.details)
        self.info = info


class _Context:
    """What BrokerService methods use of a grpc.aio ServicerContext: peer(), time_remaining(), abort()."""

    __slots__ = ("_peer",)

    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None   # the client's call timeout covers the request (a long poll is capped by long_poll_ms)

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> None:
        md = dict(trailing_metadata or ())
        name = md.get(ERROR_KEY) or "INTERNAL"
        raise _Abort(ErrorInfo(name, details or "", md.get(MASTER_KEY, ""), md.get(STORED_KEY) == "0"))


def _internal(e: BaseException) -> ErrorInfo:
    return ErrorInfo("INTERNAL", f"{type(e).__name__}: {e}"[:1000])


async def _drive(coro: Any, yielded: Any) -> Any:
    """Finish a coroutine whose first step already ran (and suspended on `yielded`) inside this task,
    stepping it like asyncio.Task does: what eager task execution (Python 3.12) would do."""
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)             # a bare `yield`
            else:
                yielded._asyncio_future_blocking = False   # as Task.__step does with what a coroutine yields
                with contextlib.suppress(Exception):
                    await yielded                   # its result/exception is read by the coroutine itself
        except asyncio.CancelledError:
            if yielded is not None and not yielded.done():
                yielded.cancel()
            try:
                yielded = coro.throw(asyncio.CancelledError())
            except StopIteration as e:
                return e.value
            continue
        try:
            yielded = coro.send(None)
        except StopIteration as e:
            return e.value


class _Connection(asyncio.Protocol):
    """One client connection: framed requests in, replies out (pipelined, any order)."""

    def __init__(self, server: RemotingServer) -> None:
        self.server = server
        self.side = ServerSide(server.max_frame, server.max_in_flight, require_hello=server.auth is not None,
                               server="orbitmq-broker")
        self.identity: Any = None   # what the HELLO proved (with `auth`): remoting_auth.Identity
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.ctx = _Context("")
        self.tasks: set[asyncio.Task] = set()
        self.paused = False
        self.sock: socket.socket | None = None
        self.lowat = 1
        stats = getattr(server.service, "stats", None)    # BrokerService counters (GetBrokerStatus `stats`)
        self.stats: dict | None = stats if isinstance(stats, dict) else None

    # ---- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            host, port = peer[0], peer[1]
            self.peer = f"{host}:{port}"
            self.ctx = _Context(f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if transport.get_extra_info("ssl_object") is None:
                self.sock = sock     # plain TCP: SO_RCVLOWAT may be tuned (not under TLS records)
        self.server.connections.add(self)
        if self.stats is not None:
            self.stats["framed_connections"] = len(self.server.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.stats is not None:
            self.stats["framed_connections"] = len(self.server.connections)
        self.side.closed = self.side.closed or "connection lost"
        for t in list(self.tasks):
            t.cancel()

    def data_received(self, data: bytes) -> None:
        held = self.server.held_work
        if held is None:
            self._received(data)
            return
        held[0]()
        try:
            self._received(data)
        finally:
            held[1]()     # after the replies were written (e.g. the store's indexing of what was appended)

    def _received(self, data: bytes) -> None:
        side = self.side
        if side.closed is not None:
            return
        try:
            events = side.receive(data)
        except FrameError as e:
            log.warning("closing framed connection from %s: malformed input: %s", self.peer, str(e)[:LOG_BYTES])
            self.transport.close()
            return
        out: list[bytes] = []
        for i, ev in enumerate(events):
            if type(ev) is Hello:
                later = self._hello(ev, out)
                if later is not None:     # an unknown access key: decided after one refresh of the users
                    self.paused = True
                    self.transport.pause_reading()
                    task = asyncio.get_running_loop().create_task(self._hello_later(ev, later, events[i + 1:]))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                    break
                if side.closed is not None:
                    break
            else:
                self._dispatch(ev, out)
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.sock is not None and (self.lowat != 1 or side.buffering):
            lowat = framing.low_water(side.wanted)
            if lowat != self.lowat:     # a large request arriving: wake once it is (nearly) whole
                self.lowat = lowat
                with contextlib.suppress(OSError):
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
        if side.closed is not None:
            self.transport.close()
        elif side.want_pause and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    # ---- requests -------------------------------------------------------------------------------------

    def _hello(self, ev: Hello, out: list[bytes], refreshed: bool = False) -> str | None:
        """Answer a HELLO into `out` (closing the connection after a refusal); returns the access key
        to refresh the users for when `auth` has to see the users again first (nothing answered)."""
        auth = self.server.auth
        if auth is not None:
            from orbitmq.broker.remoting_auth import NeedsRefresh
            try:
                got = auth.hello(ev.fields, self.peer, refreshed)
            except NeedsRefresh as e:
                return e.access_key
            except Exception as e:  # noqa: BLE001 - a failing check refuses
                log.exception("framed HELLO check failed")
                got = ErrorInfo("UNAUTHENTICATED", f"authentication failed: {type(e).__name__}")
            if isinstance(got, ErrorInfo):
                out.append(self.side.fail(ev.request_id, got))
                self.side.closed = "authentication refused"
                return None
            self.identity = got
        out.append(self.side.hello_reply(ev.request_id))
        return None

    async def _hello_later(self, ev: Hello, access_key: str, rest: list[Any]) -> None:
        """A HELLO naming an access key the users cache did not know: refresh once, decide, then
        serve what the client pipelined behind it and read on."""
        try:
            await self.server.auth.auth.cache.refresh_unknown(access_key)
        except Exception:  # noqa: BLE001 - the decision below refuses an unknown key
            log.debug("users refresh for a framed HELLO failed", exc_info=True)
        t = self.transport
        if t is None or t.is_closing():
            return
        out: list[bytes] = []
        self._hello(ev, out, refreshed=True)
        if self.side.closed is None:
            for r in rest:
                self._dispatch(r, out)
        if out:
            t.write(b"".join(out))
        if self.side.closed is not None:
            t.close()
            return
        self.paused = False
        if not self.side.want_pause:
            t.resume_reading()
        else:
            self.paused = True

    def _dispatch(self, ev: Any, out: list[bytes]) -> None:
        rid, oneway = ev.request_id, ev.oneway
        if self.stats is not None:
            self.stats["framed_calls"] = self.stats.get("framed_calls", 0) + 1
        m = self.server.methods.get(ev.method)
        if m is None:
            if not oneway:
                out.append(self.side.fail(rid, ErrorInfo("BAD_REQUEST", f"unknown method code {ev.method}")))
            return
        batch = None
        try:
            payload = ev.payload
            if len(payload) >= TAIL_MIN and m.name == "SendMessage" and self.server.send_apart is not None:
                # a batch record: handed on as a view of the received frame, not copied into the request
                split = split_tail(payload, SEND_BATCH_FIELD)
                if split is not None:
                    payload, batch = split
                    if self.stats is not None:
                        self.stats["framed_batches_apart"] = self.stats.get("framed_batches_apart", 0) + 1
            request = m.request.FromString(payload)
        except Exception as e:  # noqa: BLE001 - the client's malformed protobuf
            if not oneway:
                out.append(self.side.fail(rid, ErrorInfo(
                    "BAD_REQUEST", f"malformed {m.request.DESCRIPTOR.name}: {str(e)[:LOG_BYTES]}")))
            return
        if self.identity is not None:
            refused = self.server.auth.check(self.identity, m.name, request, self.peer)
            if refused is not None:
                if not oneway:
                    out.append(self.side.fail(rid, refused))
                return
        if batch is not None:
            coro = self.server.send_apart(request, self.ctx, batch)
        else:
            coro = getattr(self.server.service, m.name)(request, self.ctx)
        try:
            yielded = coro.send(None)
        except StopIteration as s:
            if not oneway:
                out.append(self._answer(rid, s.value))
            return
        except _Abort as a:
            if not oneway:
                out.append(self.side.fail(rid, a.info))
            return
        except Exception as e:  # noqa: BLE001
            log.exception("framed %s failed", m.name)
            if not oneway:
                out.append(self.side.fail(rid, _internal(e)))
            return
        task = asyncio.get_running_loop().create_task(self._finish(rid, oneway, m.name, coro, yielded))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _answer(self, rid: int, response: Any) -> bytes:
        if response is None:
            return self.side.fail(rid, ErrorInfo("INTERNAL", "the method returned no answer"))
        return self.side.reply(rid, response.SerializeToString())

    async def _finish(self, rid: int, oneway: bool, name: str, coro: Any, yielded: Any) -> None:
        try:
            response = await _drive(coro, yielded)
            data = None if oneway else self._answer(rid, response)
        except _Abort as a:
            data = None if oneway else self.side.fail(rid, a.info)
        except asyncio.CancelledError:
            return          # the connection is gone (or the server stops): nobody to answer
        except Exception as e:  # noqa: BLE001
            log.exception("framed %s failed", name)
            data = None if oneway else self.side.fail(rid, _internal(e))
        t = self.transport
        if data is not None and t is not None and not t.is_closing():
            t.write(data)
        if self.paused and not self.side.want_pause and t is not None and not t.is_closing():
            self.paused = False
            t.resume_reading()


class RemotingServer:
    """The framed listener of one broker: `await start(listen)`, then `await stop()`."""

    def __init__(self, service: Any, *, max_frame: int = framing.DEFAULT_MAX_FRAME, max_in_flight: int = 1024,
                 ssl: Any = None, auth: Any = None,
                 methods: dict[int, Method] | None = None,
                 held_work: tuple[Callable[[], None], Callable[[], None]] | None = None) -> None:
        """`service` has an async method per name in `methods` (default: the Broker RPCs of
        common/framing_methods.py), called as `method(request, context)` like a gRPC servicer.
        `held_work` (hold, run): `hold()` before the requests of one read run, `run()` after their
        replies are written: the broker holds the store's dispatcher wake-ups and indexes after
        answering (MessageStore.hold_dispatch / run_held_dispatch)."""
        self.service = service
        self.methods = BY_CODE if methods is None else methods
        self.max_frame = max_frame
        self.max_in_flight = max_in_flight
        self.ssl = ssl
        self.auth = auth           # broker/remoting_auth.FramedAuth when auth_enabled
        self.held_work = held_work
        # `service.send(request, context, batch)`: SendMessage with the batch record apart (a view of
        # the received frame, common/proto_tail.py), when the service has it
        self.send_apart: Callable[..., Any] | None = getattr(service, "send", None)
        self.connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self, listen: str) -> int:
        """Listen on host:port (port 0: any free port); returns the bound port."""
        host, port = split_addr(listen)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, ssl=self.ssl,
                                                reuse_address=True, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop accepting, close every connection (their unanswered calls fail on the client side)."""
        if self._server is None:
            return
        self._server.close()
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()
            for t in list(c.tasks):
                t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None


__all__ = ["LocalProtocolError", "RemotingServer"]
