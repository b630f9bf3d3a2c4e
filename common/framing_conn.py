"""The framed protocol's connection rules (sans-IO, like h11): one object per side of a connection.

Owns: request ids and which calls are outstanding (many in flight on one connection, replies in
any order, matched by id), the HELLO exchange, and what is a protocol violation on each side.
`ClientSide.request()` / `ServerSide.reply()` return the bytes to write; `receive(bytes)` returns
events. A violation by the peer raises `FrameError` (close the connection: every outstanding call
fails); a misuse by our own code raises `LocalProtocolError`. Never: sockets, threads, clocks or
protobuf parsing (the shells in client/remoting.py and broker/remoting.py do those).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from orbitmq.common import framing
from orbitmq.common.framing import (
    FLAG_ERROR,
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    ErrorInfo,
    FrameDecoder,
    FrameError,
)
from orbitmq.common.framing_methods import HELLO, hello_payload, parse_hello

ABANDONED_KEPT = 65536   # late replies to this many abandoned (timed out, cancelled) calls are dropped quietly


class LocalProtocolError(Exception):
    """Our own code used the connection wrongly (a bug, or a call on a closed connection)."""


# ---- events ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class Reply:
    request_id: int
    method: int
    payload: bytes


@dataclass(slots=True)
class Failed:
    request_id: int
    method: int
    error: ErrorInfo


@dataclass(slots=True)
class HelloReply:
    fields: dict[str, Any]


@dataclass(slots=True)
class Request:
    request_id: int
    method: int
    payload: bytes
    oneway: bool


@dataclass(slots=True)
class Hello:
    request_id: int
    fields: dict[str, Any]


# ---- the client's side --------------------------------------------------------------------------------

class ClientSide:
    """Issue requests, match replies. `hello()` first; requests may follow at once (pipelined)."""

    def __init__(self, max_frame: int = framing.DEFAULT_MAX_FRAME, crc: bool = False) -> None:
        self._decoder = FrameDecoder(max_frame)
        self.crc = crc
        self._next = 1
        self._pending: dict[int, int] = {}                    # request id -> method
        self._abandoned: OrderedDict[int, None] = OrderedDict()
        self._hello_id: int | None = None
        self.hello_fields: dict[str, Any] | None = None       # the server's HELLO reply, once received
        self.closed: str | None = None                        # why, once closed
        self.missing = 0     # `wanted` as of the last receive(): a plain attribute, read once per read

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def wanted(self) -> int:
        """Bytes missing from the reply being received (see FrameDecoder.wanted)."""
        return self._decoder.wanted

    def _new_id(self) -> int:
        rid = self._next
        while rid in self._pending or rid in self._abandoned or rid == 0:
            rid = (rid + 1) & framing.MAX_REQUEST_ID
        self._next = (rid + 1) & framing.MAX_REQUEST_ID
        return rid

    def hello(self, **fields: Any) -> bytes:
        if self._hello_id is not None:
            raise LocalProtocolError("HELLO already sent on this connection")
        self._check_open()
        rid = self._hello_id = self._new_id()
        self._pending[rid] = HELLO
        return framing.encode(rid, HELLO, hello_payload(**fields), crc=self.crc)

    def request(self, method: int, payload: bytes, oneway: bool = False) -> tuple[int, bytes]:
        """(request id, bytes to write). A one-way request gets no reply and is not tracked."""
        rid = self._request_id(method, oneway)
        return rid, framing.encode(rid, method, payload, FLAG_ONEWAY if oneway else 0, crc=self.crc)

    def request_parts(self, method: int, parts: tuple[bytes | bytearray | memoryview, ...]) -> tuple[int, list[Any]]:
        """`request` of a payload given in parts: (request id, the frame's parts to write in order)."""
        rid = self._request_id(method, False)
        return rid, framing.encode_parts(rid, method, parts, crc=self.crc)

    def _request_id(self, method: int, oneway: bool) -> int:
        """A new request's id (tracked for its reply unless one-way), after the checks every request passes."""
        self._check_open()
        if self._hello_id is None:
            raise LocalProtocolError("send HELLO before any request")
        if method == HELLO:
            raise LocalProtocolError("HELLO is sent by hello()")
        rid = self._new_id()
        if not oneway:
            self._pending[rid] = method
        return rid

    def abandon(self, request_id: int) -> bool:
        """Forget an outstanding call (timed out, cancelled): its late reply is dropped."""
        if self._pending.pop(request_id, None) is None:
            return False
        self._abandoned[request_id] = None
        if len(self._abandoned) > ABANDONED_KEPT:
            self._abandoned.popitem(last=False)
        return True

    def receive(self, data: bytes | bytearray | memoryview) -> list[Reply | Failed | HelloReply]:
        self._check_open()
        try:
            dec = self._decoder
            frames = dec.feed(data)
            self.missing = dec.wanted if dec.buffered else 0
            out: list[Reply | Failed | HelloReply] = []
            pending = self._pending
            for f in frames:
                flags = f.flags
                if not flags & FLAG_RESPONSE or flags & FLAG_ONEWAY:
                    raise FrameError(f"the server sent a request frame (id {f.request_id}, flags {flags:#x})")
                method = pending.pop(f.request_id, None)
                if method is None:
                    if f.request_id in self._abandoned:
                        del self._abandoned[f.request_id]
                        continue                      # a late reply to an abandoned call
                    raise FrameError(f"reply to request id {f.request_id}, which is not outstanding")
                if method != f.method:
                    raise FrameError(f"reply to request {f.request_id} names method {f.method}, sent {method}")
                if flags & FLAG_ERROR:
                    out.append(Failed(f.request_id, method, framing.decode_error(f.payload)))
                elif method == HELLO:
                    try:
                        self.hello_fields = parse_hello(f.payload)
                    except ValueError as e:
                        raise FrameError(str(e)) from None
                    out.append(HelloReply(self.hello_fields))
                else:
                    out.append(Reply(f.request_id, method, f.payload))
            return out
        except FrameError as e:
            self.close(str(e))
            raise

    def close(self, reason: str) -> list[int]:
        """Mark closed; returns the ids of the calls still outstanding (they have failed)."""
        if self.closed is None:
            self.closed = reason
        ids = list(self._pending)
        self._pending.clear()
        return ids

    def _check_open(self) -> None:
        if self.closed is not None:
            raise LocalProtocolError(f"connection closed: {self.closed}")


# ---- the server's side -----------------------------------------------------------------------------------

class ServerSide:
    """Take requests, write replies. With `require_hello`, the first frame must be a HELLO (the place
    a per-connection authentication hook reads credentials from)."""

    def __init__(self, max_frame: int = framing.DEFAULT_MAX_FRAME, max_in_flight: int = 1024,
                 require_hello: bool = False, **hello_fields: Any) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self._decoder = FrameDecoder(max_frame)
        self.max_in_flight = max_in_flight
        self.require_hello = require_hello
        self._hello_fields = {"max_frame": max_frame, "max_in_flight": max_in_flight, **hello_fields}
        self._in_flight: dict[int, int] = {}          # request id -> method (replies still owed)
        self._crc: set[int] = set()                   # ids whose request carried a CRC: so does the reply
        self.hello_fields: dict[str, Any] | None = None
        self.closed: str | None = None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def wanted(self) -> int:
        """Bytes missing from the request being received (see FrameDecoder.wanted)."""
        return self._decoder.wanted

    @property
    def buffering(self) -> bool:
        """Part of a frame has arrived and waits for the rest."""
        return self._decoder.buffered > 0

    @property
    def want_pause(self) -> bool:
        """Stop reading until replies drain (backpressure on a client that pipelines too much)."""
        return len(self._in_flight) >= self.max_in_flight

    def receive(self, data: bytes | bytearray | memoryview) -> list[Request | Hello]:
        if self.closed is not None:
            raise LocalProtocolError(f"connection closed: {self.closed}")
        try:
            frames = self._decoder.feed(data)
            out: list[Request | Hello] = []
            for f in frames:
                flags = f.flags
                if flags & (FLAG_RESPONSE | FLAG_ERROR):
                    raise FrameError(f"the client sent a reply frame (id {f.request_id}, flags {flags:#x})")
                if f.method == HELLO:
                    if self.hello_fields is not None:
                        raise FrameError("second HELLO on one connection")
                    if flags & FLAG_ONEWAY:
                        raise FrameError("one-way HELLO")
                    try:
                        self.hello_fields = parse_hello(f.payload)
                    except ValueError as e:
                        raise FrameError(str(e)) from None
                    self._track(f)
                    out.append(Hello(f.request_id, self.hello_fields))
                    continue
                if self.require_hello and self.hello_fields is None:
                    raise FrameError(f"request (method {f.method}) before HELLO")
                oneway = bool(flags & FLAG_ONEWAY)
                if not oneway:
                    self._track(f)
                out.append(Request(f.request_id, f.method, f.payload, oneway))
            return out
        except FrameError as e:
            self.closed = str(e)
            raise

    def _track(self, f: framing.Frame) -> None:
        if f.request_id in self._in_flight:
            raise FrameError(f"request id {f.request_id} reused while its call is outstanding")
        self._in_flight[f.request_id] = f.method
        if f.crc:
            self._crc.add(f.request_id)

    def _owed(self, request_id: int) -> tuple[int, bool]:
        method = self._in_flight.pop(request_id, None)
        if method is None:
            raise LocalProtocolError(f"no outstanding request {request_id} to answer")
        if request_id in self._crc:
            self._crc.discard(request_id)
            return method, True
        return method, False

    def hello_reply(self, request_id: int, **fields: Any) -> bytes:
        method, crc = self._owed(request_id)
        if method != HELLO:
            raise LocalProtocolError(f"request {request_id} is not the HELLO")
        return framing.encode(request_id, HELLO, hello_payload(**{**self._hello_fields, **fields}), FLAG_RESPONSE,
                              crc=crc)

    def reply(self, request_id: int, payload: bytes) -> bytes:
        method, crc = self._owed(request_id)
        return framing.encode(request_id, method, payload, FLAG_RESPONSE, crc=crc)

    def fail(self, request_id: int, error: ErrorInfo) -> bytes:
        method, crc = self._owed(request_id)
        return framing.encode(request_id, method, framing.encode_error(error), FLAG_RESPONSE | FLAG_ERROR, crc=crc)

    def owes(self, request_id: int) -> bool:
        return request_id in self._in_flight
