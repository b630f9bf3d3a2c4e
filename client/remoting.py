"""The client's framed connection to one broker (`remoting_listen`): calls that look like gRPC's.

Owns: one TCP (optionally TLS) connection per broker address, opened on first use with a HELLO
and reopened after it breaks; a reader thread that matches replies to calls by request id (many
calls in flight from any number of threads); call deadlines (a watchdog thread fails overdue
calls with DEADLINE_EXCEEDED); and `RemotingCall`, a future with the grpc.Future surface
(`result(timeout)`, `cancel`, `add_done_callback`, `done`), whose failures are `RemotingRpcError`s,
a `grpc.RpcError` carrying the same status, `orbitmq-error`, `orbitmq-master` and
`orbitmq-stored` metadata as the gRPC path, so callers handle both the same way. The rules are in
common/framing_conn.py; this module only moves bytes. Never: retries (the producer's).

Leader/followers: a callback run by a connection's reader thread may hand work to that same thread
with `run_after_read(fn)` (the push consumer runs its listener so, with no hop to a pool thread);
the thread first gives the reading role to a second reader thread of the connection, then runs
`fn`, then waits to read again. Work marked quick (`quick=True`: a listener whose recent calls were
short) is run without waking anyone: the reading role stays free while it runs (a thread waiting
for its own reply reads it itself) and the thread reads on right after, so a message costs the
consumer one wake-up instead of three; should the work take longer than `LAZY_HANDOFF_S`, the
deadline watchdog hands the reading role on as above.
"""

from __future__ import annotations

import heapq
import logging
import select
import socket
import ssl as _ssl
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import grpc

from orbitmq.client.batch_send import BatchSend
from orbitmq.common import dial_map
from orbitmq.common.error_codes import ErrorCode
from orbitmq.common.framing import DEFAULT_MAX_FRAME, ErrorInfo, FrameError, low_water
from orbitmq.common.framing_conn import ClientSide, Failed, HelloReply, LocalProtocolError, Reply
from orbitmq.common.framing_methods import BY_NAME, Method
from orbitmq.common.grpc_errors import ERROR_KEY, MASTER_KEY, STATUS_OF
from orbitmq.common.net import split_addr

log = logging.getLogger("orbitmq.client.remoting")

STORED_KEY = "orbitmq-stored"
CONNECT_TIMEOUT_S = 3.0
RECV_BYTES = 256 * 1024
_PENDING, _DONE, _CANCELLED = 0, 1, 2
MAX_READERS = 4        # reader threads per connection: one reads while the others run handed-over work
READ_WAIT_S = 0.1      # a caller reading its own reply re-checks its call and deadline this often
LAZY_HANDOFF_S = 0.02  # quick handed-over work running this long: another reader thread takes over reading
_local = threading.local()


def work_after_read() -> bool:
    """From a callback on a connection's reader thread: True once work was handed to this thread
    with `run_after_read` during the current read (it runs, in order, after the read)."""
    reading = getattr(_local, "reading", None)
    return reading is not None and bool(reading.deferred)


def run_after_read(fn: Callable[[], None], quick: bool = False) -> bool:
    """From a callback running on a connection's reader thread: run `fn` on this thread once it has
    given the reading role to another reader thread of the connection (so reading never waits for
    `fn`). With `quick` (work expected to take well under a millisecond, every `fn` of this read
    so), nobody is woken: the reading role is left free while `fn` runs and the thread reads on
    after it, unless `fn` ran past LAZY_HANDOFF_S and the watchdog handed reading on meanwhile.
    False elsewhere, or when every other reader thread is busy with such work (the caller then runs
    `fn` its own way, e.g. in a pool)."""
    reading = getattr(_local, "reading", None)
    if reading is None:
        return False
    client, conn, deferred = reading.client, reading.conn, reading.deferred
    if not deferred:                      # this thread is about to become busy
        with client._lock:
            if conn.readers - conn.busy < 2 and conn.readers >= MAX_READERS:
                return False              # nobody would be left to read
            conn.busy += 1
    deferred.append(fn)
    if not quick:
        reading.hand_off = True
    return True


class _Read:
    """What a reader thread's current read holds: work handed to it, and whether a second reader
    must take over reading before that work runs (some of it not quick)."""

    __slots__ = ("client", "conn", "deferred", "hand_off")

    def __init__(self, client: RemotingClient, conn: _Conn) -> None:
        self.client = client
        self.conn = conn
        self.deferred: list[Callable[[], None]] = []
        self.hand_off = False


class RemotingRpcError(grpc.RpcError):
    """A failed framed call, with the accessors of a failed gRPC call (code, details, metadata)."""

    def __init__(self, status: grpc.StatusCode, details: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(details)
        self._status = status
        self._details = details
        self._md = metadata

    @classmethod
    def from_info(cls, info: ErrorInfo) -> RemotingRpcError:
        try:
            status = STATUS_OF[ErrorCode(info.code)]
        except ValueError:
            status = grpc.StatusCode.UNKNOWN
        md: tuple[tuple[str, str], ...] = ((ERROR_KEY, info.code),)
        if info.master_address:
            md += ((MASTER_KEY, info.master_address),)
        if info.not_stored:
            md += ((STORED_KEY, "0"),)
        return cls(status, info.details, md)

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._md

    def initial_metadata(self) -> tuple:
        return ()

    def __str__(self) -> str:
        return f"{self._status.name}: {self._details}"


class RemotingCall:
    """One framed call in flight: a grpc.Future look-alike (result, exception, done, cancel, callbacks)."""

    __slots__ = ("_callbacks", "_client", "_conn", "_error", "_payload", "_response", "_state", "_waiter", "deadline",
                 "method", "request_id")

    def __init__(self, client: RemotingClient, method: Method, deadline: float) -> None:
        self._client = client
        self._conn: _Conn | None = None
        self.method = method
        self.deadline = deadline
        self.request_id = 0
        self._state = _PENDING
        self._payload: bytes | None = None
        self._response: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[RemotingCall], None]] | None = None
        # made (acquired) by a thread that waits while another reads, released once the call ends;
        # a caller that reads its own reply (the common sync call) never needs one
        self._waiter: threading.Lock | None = None

    # ---- grpc.Future surface ------------------------------------------------------------------------

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def running(self) -> bool:
        return self._state == _PENDING

    def result(self, timeout: float | None = None) -> Any:
        if self._state == _PENDING and not self._client._wait(self, timeout):
            raise grpc.FutureTimeoutError()
        if self._state == _CANCELLED:
            raise grpc.FutureCancelledError()
        if self._error is not None:
            raise self._error
        if self._payload is not None:
            try:
                self._response = self.method.response.FromString(self._payload)
            except Exception as e:  # noqa: BLE001 - the broker's reply did not decode
                self._error = RemotingRpcError(grpc.StatusCode.INTERNAL, f"malformed {self.method.name} reply: {e}",
                                               ((ERROR_KEY, "INTERNAL"),))
                raise self._error from None
            finally:
                self._payload = None
        return self._response

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            self.result(timeout)
        except (grpc.FutureCancelledError, grpc.FutureTimeoutError):
            raise
        except BaseException as e:  # noqa: BLE001
            return e
        return None

    def cancel(self) -> bool:
        return self._client._end(self, _CANCELLED, None, None)

    def add_done_callback(self, fn: Callable[[RemotingCall], None]) -> None:
        """`fn(call)` once the call ends, in the thread that reads its reply (or at once if done)."""
        registered = False
        with self._client._lock:
            if self._state == _PENDING:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                registered = True
        if not registered:
            fn(self)
        elif self._conn is not None:
            self._conn.need_reader.set()    # nobody may wait on it: the connection's reader thread reads


class _Conn:
    """One open connection: the socket, its protocol side, its poller and its reader thread's wake-up."""

    __slots__ = ("busy", "lowat", "need_reader", "poller", "readers", "side", "sock", "timed_recv", "tls",
                 "unread_since")

    def __init__(self, sock: socket.socket, side: ClientSide) -> None:
        self.readers = 0     # reader threads alive (guarded by the client's _lock)
        self.busy = 0        # of them, running work handed over by run_after_read
        self.sock = sock
        self.side = side
        self.tls = isinstance(sock, _ssl.SSLSocket)
        self.lowat = 1
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLIN)
        # plain TCP: the kernel ends a recv that waited READ_WAIT_S (EAGAIN), so a caller waiting
        # that long needs no poll() before its recv (one syscall and GIL round trip, not two)
        self.timed_recv = False
        if not self.tls:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                struct.pack("ll", 0, int(READ_WAIT_S * 1_000_000)))
                self.timed_recv = True
            except OSError:
                pass
        self.need_reader = threading.Event()
        # monotonic time since which quick handed-over work runs with nobody reading (0: someone
        # reads, or will at once): the watchdog hands reading on once that lasts LAZY_HANDOFF_S
        self.unread_since = 0.0


class RemotingClient:
    """Calls to one broker's framed port; thread-safe; `close()` fails what is still in flight.

    Replies are read by whoever needs them: a thread waiting in `result()` reads the socket itself
    when no other thread is reading (one wake-up per round trip, as gRPC's sync calls), and the
    connection's reader thread reads for calls nobody waits on (callbacks, async sends, pulls).
    """

    def __init__(self, address: str, *, ssl_context: _ssl.SSLContext | None = None, server_hostname: str | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, crc: bool = False,
                 max_frame: int = DEFAULT_MAX_FRAME,
                 hello: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
                 methods: dict[str, Method] | None = None) -> None:
        split_addr(address)
        self.methods = BY_NAME if methods is None else methods   # name -> code and protobuf types
        self.address = address
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.connect_timeout_s = connect_timeout_s
        self.crc = crc
        self.max_frame = max_frame
        # extra HELLO fields, or a function making them at each connect: credentials (common/framed_auth.py)
        self.hello = hello if callable(hello) else dict(hello or {})
        self._lock = threading.Lock()      # the connection state, the calls table, the deadline heap
        self._wlock = threading.Lock()     # one writer at a time on the socket
        self._rlock = threading.RLock()    # one reader at a time (re-entered by a callback that waits)
        self._connect_lock = threading.Lock()
        self._conn: _Conn | None = None
        self._calls: dict[int, RemotingCall] = {}
        self._deadlines: list[tuple[float, int, RemotingCall]] = []
        self._closed = False
        self._watched = False              # known to the deadline watchdog (_WATCHDOG)
        self.server_hello: dict[str, Any] = {}

    # ---- calls --------------------------------------------------------------------------------------

    def future(self, method: str, request: Any, timeout: float) -> RemotingCall:
        """Start `method` (a Broker RPC name served on the framed port) with a deadline in `timeout` s."""
        m = self.methods[method]
        call = RemotingCall(self, m, time.monotonic() + timeout)
        conn: _Conn | None = None
        try:
            # a batch record goes out as it is: [frame header, other fields, record] in one sendmsg
            parts = request.payload_parts() if type(request) is BatchSend else None
            payload = request.SerializeToString() if parts is None else None
            conn = self._connection(timeout)
            with self._lock:
                if conn.side.closed is not None:
                    raise LocalProtocolError(conn.side.closed)
                if payload is not None:
                    rid, data = conn.side.request(m.code, payload)
                else:
                    rid, vec = conn.side.request_parts(m.code, parts)
                call.request_id = rid
                call._conn = conn
                self._calls[rid] = call
                heapq.heappush(self._deadlines, (call.deadline, rid, call))
            _WATCHDOG.watch(self)
            with self._wlock:
                if payload is not None:
                    conn.sock.sendall(data)
                elif conn.tls:
                    conn.sock.sendall(b"".join(vec))     # (an SSL socket has no sendmsg)
                else:
                    sendmsg_all(conn.sock, vec)
        except RemotingRpcError as e:
            self._end(call, _DONE, None, e)
        except (OSError, LocalProtocolError) as e:
            self._end(call, _DONE, None, _unavailable(f"framed connection to {self.address}: {e}"))
            if conn is not None and not isinstance(e, LocalProtocolError):
                self._broken(conn, f"send failed: {e}")
        return call

    def call(self, method: str, request: Any, timeout: float) -> Any:
        """A blocking call; raises RemotingRpcError."""
        return self.future(method, request, timeout).result()

    def oneway(self, method: str, request: Any) -> None:
        """Send without a reply (errors are not reported)."""
        m = self.methods[method]
        try:
            conn = self._connection()
            with self._lock:
                _, data = conn.side.request(m.code, request.SerializeToString(), oneway=True)
            with self._wlock:
                conn.sock.sendall(data)
        except (OSError, LocalProtocolError, RemotingRpcError) as e:
            log.debug("one-way %s to %s failed: %s", method, self.address, e)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn = self._conn
        if conn is not None:
            self._broken(conn, "client closed", closing=True)

    # ---- reading ------------------------------------------------------------------------------------

    def _wait(self, call: RemotingCall, timeout: float | None) -> bool:
        """Wait until `call` ends (False: `timeout` passed), reading the socket if nobody else is."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while call._state == _PENDING:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            conn = call._conn
            if conn is not None and self._rlock.acquire(blocking=False):
                conn.unread_since = 0.0
                try:
                    while call._state == _PENDING:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            break
                        if not self._read_once(conn, READ_WAIT_S if left is None else min(left, READ_WAIT_S)):
                            break
                finally:
                    self._rlock.release()
                    if self._calls:
                        conn.need_reader.set()     # others still wait: the reader thread takes over
            else:
                with self._lock:
                    w = call._waiter
                    if w is None and call._state == _PENDING:
                        w = call._waiter = threading.Lock()
                        w.acquire()
                if w is not None and w.acquire(timeout=-1 if left is None else left):
                    w.release()        # (for the next thread waiting on it)
        return True

    def _read_once(self, conn: _Conn, wait_s: float | None) -> bool:
        """Read what the socket has (waiting up to `wait_s`; None: until something arrives, which
        costs one GIL round trip instead of two, as does READ_WAIT_S on a plain socket, whose
        recv the kernel ends then) and complete those calls; False once the connection is gone.

        While SO_RCVLOWAT is raised (a large frame arriving) the wait is a poll() and the read
        never blocks: Linux wakes a thread sleeping in recv() only when the bytes still queued
        reach the low-water mark, without counting what that recv already copied, so a recv that
        took most of a frame and waits for a small last part would sleep until more data came."""
        sock = conn.sock
        side = conn.side
        try:
            tls = conn.tls
            pending = sock.pending() if tls else 0
            big = conn.lowat > 1
            if (big or (wait_s is not None and not (conn.timed_recv and wait_s >= READ_WAIT_S))) and \
                    not pending and not conn.poller.poll(None if wait_s is None else wait_s * 1000.0):
                return side.closed is None
            n = RECV_BYTES if side.missing <= RECV_BYTES else side.missing
            try:
                data = sock.recv(n, socket.MSG_DONTWAIT) if big else sock.recv(n)
            except BlockingIOError:
                return side.closed is None      # woken with nothing to read yet
            if not data:
                raise ConnectionError("closed by the broker")
            with self._lock:
                if side.closed is not None:
                    return False
                events = side.receive(data)
                calls = self._calls
                done = [(calls.pop(ev.request_id, None), ev) for ev in events if type(ev) is not HelloReply]
                lowat = 1 if tls or not side.missing else low_water(side.missing)
            if lowat != conn.lowat:      # a large reply arriving: poll wakes once it is (nearly) whole
                conn.lowat = lowat
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
        except FrameError as e:
            why = f"malformed reply: {str(e)[:200]}"
            log.warning("closing framed connection to %s: %s", self.address, why)
            self._broken(conn, why)
            return False
        except (OSError, ValueError, LocalProtocolError) as e:
            self._broken(conn, f"connection lost: {e}")
            return False
        for call, ev in done:
            if call is None:
                continue
            if type(ev) is Reply:
                self._end(call, _DONE, ev.payload, None)
            else:
                self._end(call, _DONE, None, RemotingRpcError.from_info(ev.error))
        return True

    def _reader(self, conn: _Conn) -> None:
        """A reader thread of the connection: reads while calls are outstanding and someone asked
        it to. It blocks in recv (a call that never gets its reply is failed by the watchdog;
        closing the connection shuts the socket down, which ends the recv). Work that callbacks
        handed over with `run_after_read` runs here after the reading role passed to another reader
        thread (started if there is none, at most MAX_READERS); quick work runs with the role left
        free, and the thread takes it back after it unless someone else has it (the watchdog passes
        it on once quick work has run LAZY_HANDOFF_S)."""
        read_on = False     # after quick work: read again at once if nobody else took the role
        try:
            while True:
                if read_on:
                    read_on = False
                    if not self._rlock.acquire(blocking=False):
                        continue            # another thread reads: wait to be asked
                else:
                    conn.need_reader.wait()
                    conn.need_reader.clear()
                    if conn.side.closed is not None:
                        return
                    self._rlock.acquire()
                read = _Read(self, conn)
                deferred = read.deferred
                try:
                    conn.unread_since = 0.0
                    _local.reading = read
                    while self._calls and conn.side.closed is None:
                        if not self._read_once(conn, None) or deferred:
                            break
                finally:
                    _local.reading = None
                    self._rlock.release()
                if conn.side.closed is not None and not deferred:
                    return
                if deferred:
                    try:
                        if conn.side.closed is None:
                            if read.hand_off:
                                self._more_readers(conn)   # a reader stays free for what comes next
                                if self._calls:
                                    conn.need_reader.set()     # which reads meanwhile
                            else:
                                conn.unread_since = time.monotonic()   # the watchdog's cue (quick work)
                                read_on = True
                        for fn in deferred:
                            try:
                                fn()
                            except Exception:  # noqa: BLE001 - a caller's work must not kill the reader
                                log.exception("work handed to a framed reader thread failed")
                    finally:
                        with self._lock:
                            conn.busy -= 1
        finally:
            with self._lock:
                conn.readers -= 1

    def _more_readers(self, conn: _Conn) -> None:
        """Start a reader thread for `conn` unless one is free to read (or it has MAX_READERS)."""
        with self._lock:
            if conn.readers - conn.busy >= 1 or conn.readers >= MAX_READERS or conn.side.closed is not None:
                return
            conn.readers += 1
        threading.Thread(target=self._reader, args=(conn,), name=f"orbitmq-framed-{self.address}",
                         daemon=True).start()

    # ---- the connection -------------------------------------------------------------------------------

    def _connection(self, timeout: float | None = None) -> _Conn:
        """The open connection, or a new one (connect + HELLO within `timeout` and connect_timeout_s)."""
        conn = self._conn
        if conn is not None and conn.side.closed is None:
            return conn
        with self._connect_lock:
            if self._closed:
                raise RemotingRpcError(grpc.StatusCode.CANCELLED, "client closed")
            conn = self._conn
            if conn is not None and conn.side.closed is None:
                return conn
            conn = self._open(self.connect_timeout_s if timeout is None else min(timeout, self.connect_timeout_s))
            with self._lock:
                self._conn = conn
            self._more_readers(conn)
            return conn

    def _open(self, timeout_s: float) -> _Conn:
        """Connect, HELLO, wait for the server's HELLO (blocking, bounded by `timeout_s`: a paused
        broker's kernel still accepts the connection, only the HELLO goes unanswered)."""
        target = dial_map.resolve(self.address)
        host, port = split_addr(target)
        timeout_s = max(0.05, timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as e:
            raise _unavailable(f"cannot connect to framed port {self.address}: {e}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.server_hostname or host)
            side = ClientSide(self.max_frame, crc=self.crc)
            fields = self.hello() if callable(self.hello) else self.hello
            sock.sendall(side.hello(**{"client": "orbitmq-python", **fields}))
            while side.hello_fields is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no HELLO reply")
                sock.settimeout(left)
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionError("closed during HELLO")
                for ev in side.receive(data):
                    if isinstance(ev, Failed):
                        raise RemotingRpcError.from_info(ev.error)
            sock.settimeout(None)
            self.server_hello = side.hello_fields
            return _Conn(sock, side)
        except RemotingRpcError:
            sock.close()
            raise
        except (OSError, FrameError, LocalProtocolError) as e:
            sock.close()
            raise _unavailable(f"framed HELLO with {self.address} failed: {e}") from None

    def _broken(self, conn: _Conn, why: str, closing: bool = False) -> None:
        """The connection is gone: every call in flight on it fails UNAVAILABLE (CANCELLED if closing)."""
        with self._lock:
            if conn.side.closed is None:
                conn.side.close(why)
            if conn is not self._conn:
                return
            self._conn = None
            calls = list(self._calls.values())
            self._calls.clear()
            self._deadlines.clear()
        conn.need_reader.set()          # its reader thread ends
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.sock.close()
        err = (RemotingRpcError(grpc.StatusCode.CANCELLED, why) if closing
               else _unavailable(f"framed connection to {self.address}: {why}"))
        for c in calls:
            self._end(c, _DONE, None, err)

    def _expire(self, now: float) -> bool:
        """Fail calls past their deadline; True while calls are outstanding. Also hands the reading
        role on when quick handed-over work has left it free for LAZY_HANDOFF_S (`run_after_read`)."""
        conn = self._conn
        if conn is not None and conn.unread_since and now - conn.unread_since >= LAZY_HANDOFF_S:
            conn.unread_since = 0.0
            if self._calls and conn.side.closed is None:
                self._more_readers(conn)
                conn.need_reader.set()
        expired = []
        with self._lock:
            heap = self._deadlines
            while heap and (heap[0][0] <= now or heap[0][2]._state != _PENDING):
                _, rid, call = heapq.heappop(heap)
                if call._state == _PENDING and self._calls.pop(rid, None) is call:
                    if call._conn is not None and call._conn.side.closed is None:
                        call._conn.side.abandon(rid)
                    expired.append(call)
            busy = bool(self._calls)
        for call in expired:
            self._end(call, _DONE, None, RemotingRpcError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                                          f"no answer from {self.address} within the deadline"))
        return busy

    def _end(self, call: RemotingCall, state: int, payload: bytes | None, error: BaseException | None) -> bool:
        """Move a pending call to its final state once; run its callbacks."""
        with self._lock:
            if call._state != _PENDING:
                return False
            call._state = state
            call._payload = payload
            call._error = error
            cbs, call._callbacks = call._callbacks, None
            waiter = call._waiter
            if state == _CANCELLED and self._calls.pop(call.request_id, None) is call:
                conn = call._conn
                if conn is not None and conn.side.closed is None:
                    conn.side.abandon(call.request_id)
        if waiter is not None:
            waiter.release()
        for fn in cbs or ():
            try:
                fn(call)
            except Exception:  # noqa: BLE001 - a caller's callback must not kill the reader
                log.exception("callback of a framed call failed")
        return True


def sendmsg_all(sock: socket.socket, parts: list[Any]) -> None:
    """`sendall` of the concatenation of `parts`, without making it (one sendmsg per round)."""
    views = [memoryview(p) for p in parts if len(p)]
    while views:
        n = sock.sendmsg(views)
        while n:
            first = views[0]
            if n >= len(first):
                n -= len(first)
                del views[0]
            else:
                views[0] = first[n:]
                n = 0


def _unavailable(details: str) -> RemotingRpcError:
    return RemotingRpcError(grpc.StatusCode.UNAVAILABLE, details)


class _Watchdog:
    """One daemon thread per process failing overdue calls of every client (checked every 20 ms
    while any call is outstanding; asleep otherwise)."""

    PERIOD_S = 0.02

    def __init__(self) -> None:
        self._clients: weakref.WeakSet[RemotingClient] = weakref.WeakSet()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, client: RemotingClient) -> None:
        if not client._watched:
            with self._lock:
                self._clients.add(client)
            client._watched = True
        if not self._wake.is_set():
            self._wake.set()
            if self._thread is None:
                with self._lock:
                    if self._thread is None:
                        self._thread = threading.Thread(target=self._run, name="orbitmq-framed-deadlines",
                                                        daemon=True)
                        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.PERIOD_S)
            now = time.monotonic()
            busy = False
            for c in list(self._clients):
                busy = c._expire(now) or busy
            if not busy:
                self._wake.clear()
                # a call registered between the check and the clear sets it again in watch()
                for c in list(self._clients):
                    if c._calls:
                        self._wake.set()
                        break


_WATCHDOG = _Watchdog()
