"""The client's connections: one gRPC channel per address, calls with error mapping, and the
topic route cache fed by the name servers.

Owns: channels (shared by every stub of one client object), the choice of protocol per broker
(the framed connection of client/remoting.py when the routes announce one for that broker and
`protocol` is "auto", gRPC otherwise, or always with "grpc"), turning `grpc.RpcError` into
`OrbitError`s, asking the name servers in turn until one answers, caching routes and refreshing
them periodically (a daemon thread), at once when a caller reports a stale route, and on demand
when younger than a caller's `max_age` (a producer whose attempt goes unanswered asks often).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from orbitmq.client import errors
from orbitmq.client.batch_send import BatchSend
from orbitmq.client.remoting import RemotingClient
from orbitmq.client.routes import RouteInfo
from orbitmq.common import dial_map
from orbitmq.common import tls as tlsmod
from orbitmq.common.framing_methods import BY_NAME as FRAMED_METHODS
from orbitmq.common.tls import TlsConfig
from orbitmq.common.tls_grpc import channel as tls_channel
from orbitmq.common.tls_grpc import handshake_hint
from orbitmq.protos import broker_pb2_grpc, namesrv_pb2, namesrv_pb2_grpc

log = logging.getLogger("orbitmq.client")

PROTOCOL_ENV = "ORBITMQ_CLIENT_PROTOCOL"   # the default of `protocol` when not given: auto or grpc
ROUTE_TIMEOUT_S = 1.0  # a name server slower than this is skipped for the next (routes are small)

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def parse_namesrv(namesrv: str | list[str] | tuple[str, ...]) -> list[str]:
    """'a:1,b:2' or ['a:1', 'b:2'] -> ['a:1', 'b:2']; raises ValueError if empty or malformed."""
    from orbitmq.common.net import split_addr

    items = namesrv.split(",") if isinstance(namesrv, str) else list(namesrv)
    out = [a.strip() for a in items if a and a.strip()]
    if not out:
        raise ValueError("at least one name server address (host:port) is required")
    for a in out:
        split_addr(a)
    return out


class Transport:
    """Channels and stubs by address, plus the route cache of one client object."""

    def __init__(self, namesrv: str | list[str], route_refresh_s: float = 30.0, rpc_timeout_s: float = 10.0,
                 tls: TlsConfig | str | bool | None = None, protocol: str | None = None,
                 remoting_ssl: Any = None, credentials: Any = None) -> None:
        """`tls`: a TlsConfig, a CA file path, False (plaintext) or None (the process default,
        $ORBITMQ_TLS_CA / _CERT / _KEY; common/tls.py `resolve`). `protocol`: "auto" (the framed
        protocol where a broker announces it) or "grpc" (always); default: $ORBITMQ_CLIENT_PROTOCOL,
        else auto. `remoting_ssl`: an ssl.SSLContext for framed connections (default: made from
        `tls` when TLS is on). `credentials`: `Credentials(access_key, secret)` or a pair: every
        call is signed as that user (over gRPC each call; a framed connection signs its HELLO)."""
        from orbitmq.common.credentials import of
        protocol = protocol or os.environ.get(PROTOCOL_ENV) or "auto"
        if protocol not in ("auto", "grpc"):
            raise ValueError(f"protocol must be auto or grpc, got {protocol!r}")
        self.credentials = of(credentials)
        self.protocol = protocol
        self.remoting_ssl = remoting_ssl
        self._remoting_addr: dict[str, str] = {}           # broker gRPC address -> its framed address
        self._remoting: dict[str, RemotingClient] = {}     # framed address -> connection
        self.namesrv = parse_namesrv(namesrv)
        self.tls = tlsmod.resolve(tls)
        if self.remoting_ssl is None:   # framed connections dial TLS whenever gRPC ones do
            self.remoting_ssl = tlsmod.client_ssl_context(self.tls)
        self.route_refresh_s = route_refresh_s
        self.rpc_timeout_s = rpc_timeout_s
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._brokers: dict[str, broker_pb2_grpc.BrokerStub] = {}
        self._namesrvs: dict[str, namesrv_pb2_grpc.NameServerStub] = {}
        self._routes: dict[str, tuple[float, RouteInfo]] = {}
        self.known: set[str] = set()  # topics this client has routed at least once
        self._ns_index = 0
        self._closed = threading.Event()
        self._refresher: threading.Thread | None = None

    # ---- channels ----------------------------------------------------------------------------------

    def channel(self, addr: str) -> grpc.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            with self._lock:
                if self._closed.is_set():
                    raise errors.ClientClosedError("client is closed")
                ch = self._channels.get(addr)
                if ch is None:
                    ch = tls_channel(dial_map.resolve(addr), self.tls, CHANNEL_OPTIONS)
                    if self.credentials is not None:
                        from orbitmq.common.request_auth_grpc import signed_channel
                        ch = signed_channel(ch, self.credentials)
                    self._channels[addr] = ch
        return ch

    def _error(self, e: grpc.RpcError, addr: str) -> errors.OrbitError:
        err = errors.from_rpc_error(e, addr)
        if isinstance(err, errors.UnavailableError):
            hint = handshake_hint(err.details, self.tls.dials_tls, bool(self.tls.cert_file))
            if hint:
                err.details += hint
                err.args = (err.details,)
        return err

    def broker(self, addr: str) -> broker_pb2_grpc.BrokerStub:
        stub = self._brokers.get(addr)
        if stub is None:
            stub = self._brokers[addr] = broker_pb2_grpc.BrokerStub(self.channel(addr))
        return stub

    def nameserver(self, addr: str) -> namesrv_pb2_grpc.NameServerStub:
        stub = self._namesrvs.get(addr)
        if stub is None:
            stub = self._namesrvs[addr] = namesrv_pb2_grpc.NameServerStub(self.channel(addr))
        return stub

    def remoting(self, addr: str) -> RemotingClient | None:
        """The framed connection to the broker at gRPC address `addr`, if its route announced one."""
        raddr = self._remoting_addr.get(addr)
        if raddr is None:
            return None
        cli = self._remoting.get(raddr)
        if cli is None:
            with self._lock:
                if self._closed.is_set():
                    raise errors.ClientClosedError("client is closed")
                cli = self._remoting.get(raddr)
                if cli is None:
                    cli = self._remoting[raddr] = RemotingClient(raddr, ssl_context=self.remoting_ssl,
                                                                 hello=self._hello_fields())
        return cli

    def _hello_fields(self) -> Any:
        """What a framed connection's HELLO carries: nothing, or (made at each connect) the user's
        signature (common/framed_auth.py)."""
        creds = self.credentials
        if creds is None:
            return None
        from orbitmq.common.framed_auth import user_fields
        return lambda: user_fields(creds, time.time())

    def future(self, addr: str, method: str, request: Any, timeout: float) -> Any:
        """Start a Broker RPC: a grpc.Future, or its framed look-alike (same results and errors)."""
        r = self.remoting(addr) if method in FRAMED_METHODS else None
        if r is not None:
            return r.future(method, request, timeout)
        if type(request) is BatchSend:
            request = request.to_proto()
        return getattr(self.broker(addr), method).future(request, timeout=timeout)

    def call_broker(self, addr: str, method: str, request: Any, timeout: float | None = None) -> Any:
        """One unary Broker RPC; raises an OrbitError subclass on failure."""
        try:
            r = self.remoting(addr) if method in FRAMED_METHODS else None
            if r is not None:
                return r.call(method, request, timeout or self.rpc_timeout_s)
            if type(request) is BatchSend:
                request = request.to_proto()
            return getattr(self.broker(addr), method)(request, timeout=timeout or self.rpc_timeout_s)
        except grpc.RpcError as e:
            raise self._error(e, addr) from None

    def call_namesrv(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """Ask the name servers in turn (starting with the last that answered) until one answers.

        A typed refusal (e.g. TOPIC_NOT_FOUND) is raised at once; only unreachable ones are skipped.
        """
        last: errors.OrbitError | None = None
        n = len(self.namesrv)
        for i in range(n):
            idx = (self._ns_index + i) % n
            addr = self.namesrv[idx]
            try:
                resp = getattr(self.nameserver(addr), method)(request, timeout=timeout or self.rpc_timeout_s)
                self._ns_index = idx
                return resp
            except grpc.RpcError as e:
                err = self._error(e, addr)
                if not isinstance(err, errors.UnavailableError | errors.RequestTimeoutError):
                    raise err from None
                last = err
        raise errors.NoRouteError(f"no name server answered ({', '.join(self.namesrv)}): {last}")

    # ---- routes ------------------------------------------------------------------------------------

    def route(self, topic: str, refresh: bool = False, max_age: float | None = None) -> RouteInfo:
        """The cached route of `topic`, fetched if missing, older than `max_age` (default
        `route_refresh_s`) or `refresh`. A topic once routed is remembered in `known`."""
        now = time.monotonic()
        hit = self._routes.get(topic)
        age = self.route_refresh_s if max_age is None else max_age
        if hit is not None and not refresh and now - hit[0] < age:
            return hit[1]
        info = self._fetch_route(topic)
        self._routes[topic] = (time.monotonic(), info)
        if self.protocol == "auto":
            for reps in info.replicas.values():
                for a in reps.values():
                    raddr = info.remoting.get(a)
                    if raddr:
                        self._remoting_addr[a] = raddr
                    else:
                        self._remoting_addr.pop(a, None)   # (re)started without the framed port: gRPC
        if len(self.known) < 100_000:
            self.known.add(topic)
        self._ensure_refresher()
        return info

    def _fetch_route(self, topic: str) -> RouteInfo:
        """The route from the name server that answers first; if it knows no master for the topic
        (or, for a topic routed before, not the topic at all: a name server that just restarted
        before every broker registered again), the first other name server that does."""
        req = namesrv_pb2.GetTopicRouteRequest(topic=topic)
        timeout = min(self.rpc_timeout_s, ROUTE_TIMEOUT_S)
        first: RouteInfo | None = None
        missing: errors.OrbitError | None = None
        try:
            first = RouteInfo.from_proto(self.call_namesrv("GetTopicRoute", req, timeout=timeout))
        except errors.TopicNotFoundError as e:
            if topic not in self.known or len(self.namesrv) < 2:
                raise
            missing = e
        if first is not None and (first.write_queues or len(self.namesrv) < 2):
            return first
        n = len(self.namesrv)
        for i in range(1, n):
            idx = (self._ns_index + i) % n
            try:
                other = RouteInfo.from_proto(self.nameserver(self.namesrv[idx]).GetTopicRoute(req, timeout=timeout))
            except grpc.RpcError:
                continue
            if other.write_queues:
                self._ns_index = idx
                return other
        if first is None:
            assert missing is not None
            raise missing
        return first

    def note_master(self, topic: str, broker_set: str, addr: str) -> None:
        """A broker said who its set's master is now (NOT_MASTER + orbitmq-master): use it for the
        cached route of `topic` until the next refresh, instead of asking a name server that may
        not know yet."""
        hit = self._routes.get(topic)
        if hit is not None and broker_set in hit[1].masters:
            hit[1].masters[broker_set] = addr
            self._routes[topic] = (time.monotonic(), hit[1])

    def invalidate(self, topic: str) -> None:
        """Forget the cached route so the next use fetches it (called on stale-route errors)."""
        self._routes.pop(topic, None)

    def _ensure_refresher(self) -> None:
        if self._refresher is None:
            with self._lock:
                if self._refresher is None and not self._closed.is_set():
                    self._refresher = threading.Thread(target=self._refresh_loop, name="orbitmq-routes", daemon=True)
                    self._refresher.start()

    def _refresh_loop(self) -> None:
        while not self._closed.wait(self.route_refresh_s):
            for topic in list(self._routes):
                try:
                    self.route(topic, refresh=True)
                except errors.OrbitError as e:
                    log.debug("route refresh of %s failed: %s", topic, e)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            chans = list(self._channels.values())
            self._channels.clear()
            self._brokers.clear()
            self._namesrvs.clear()
            rems = list(self._remoting.values())
            self._remoting.clear()
        for ch in chans:
            ch.close()
        for r in rems:
            r.close()


def retry_call(fn: Callable[[], Any], attempts: int) -> Any:
    """Call `fn` up to `attempts` times while it raises a retriable OrbitError (no wait)."""
    for i in range(attempts):
        try:
            return fn()
        except errors.OrbitError as e:
            if not e.retriable or i == attempts - 1:
                raise
    raise AssertionError("unreachable")
