"""The client's connections: one gRPC channel per address, calls with error mapping, and the
topic route cache fed by the name servers.

Owns: channels (shared by every stub of one client object), turning `grpc.RpcError` into
`OrbitError`s, asking the name servers in turn until one answers, caching routes and refreshing
them periodically (a daemon thread), at once when a caller reports a stale route, and on demand
when younger than a caller's `max_age` (a producer whose attempt goes unanswered asks often).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from orbitmq.client import errors
from orbitmq.client.routes import RouteInfo
from orbitmq.common import dial_map
from orbitmq.protos import broker_pb2_grpc, namesrv_pb2, namesrv_pb2_grpc

log = logging.getLogger("orbitmq.client")

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
                 credentials: Any = None) -> None:
        """`credentials`: `Credentials(access_key, secret)` or a pair: every call is signed as that user."""
        from orbitmq.common.credentials import of
        self.namesrv = parse_namesrv(namesrv)
        self.credentials = of(credentials)
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
                    ch = grpc.insecure_channel(dial_map.resolve(addr), options=CHANNEL_OPTIONS)
                    if self.credentials is not None:
                        from orbitmq.common.request_auth_grpc import signed_channel
                        ch = signed_channel(ch, self.credentials)
                    self._channels[addr] = ch
        return ch

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

    def call_broker(self, addr: str, method: str, request: Any, timeout: float | None = None) -> Any:
        """One unary Broker RPC; raises an OrbitError subclass on failure."""
        try:
            return getattr(self.broker(addr), method)(request, timeout=timeout or self.rpc_timeout_s)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e, addr) from None

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
                err = errors.from_rpc_error(e, addr)
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
        info = RouteInfo.from_proto(self.call_namesrv("GetTopicRoute", namesrv_pb2.GetTopicRouteRequest(topic=topic),
                                                      timeout=min(self.rpc_timeout_s, ROUTE_TIMEOUT_S)))
        self._routes[topic] = (time.monotonic(), info)
        if len(self.known) < 100_000:
            self.known.add(topic)
        self._ensure_refresher()
        return info

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
        for ch in chans:
            ch.close()


def retry_call(fn: Callable[[], Any], attempts: int) -> Any:
    """Call `fn` up to `attempts` times while it raises a retriable OrbitError (no wait)."""
    for i in range(attempts):
        try:
            return fn()
        except errors.OrbitError as e:
            if not e.retriable or i == attempts - 1:
                raise
    raise AssertionError("unreachable")
