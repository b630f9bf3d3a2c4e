"""Server side of user authentication and authorisation: one grpc.aio interceptor for the broker
and the proxy.

For every call of a protected method it (1) lets through a call signed with the cluster secret
(`orbitmq-node-auth`: a proxy forwarding, a node; a bad node signature is refused), (2) verifies
the user's request signature against the cached users (`request_auth.verify`; an unknown access
key triggers one early refresh of the cache), (3) asks `need_of(method, request, metadata)` what the call
needs and `acl.decide` whether the verified user may. The identity is only the access key the
signature proved; the source address is only `context.peer()`. Refusals go through a `Refuser`:
the broker aborts with UNAUTHENTICATED / PERMISSION_DENIED + `orbitmq-error`, the proxy answers
the protocol's Status. Streams from clients (Telemetry) are authenticated once at their start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from orbitmq.common import acl, node_auth, request_auth
from orbitmq.common.node_auth_grpc import payload_of

log = logging.getLogger("orbitmq.auth")


@dataclass(frozen=True)
class Need:
    """What a call needs: every check (and, if listed, one of `any_checks`), or an admin user, or
    a cluster node."""

    checks: tuple[acl.Check, ...] = ()
    any_checks: tuple[acl.Check, ...] = ()
    admin_only: bool = False
    node_only: bool = False


@dataclass(frozen=True)
class Refusal:
    forbidden: bool      # False: not authenticated; True: authenticated but not allowed
    message: str


class Refuser(Protocol):
    async def unary(self, method: str, context: grpc.aio.ServicerContext, r: Refusal) -> Any: ...

    def stream_item(self, method: str, r: Refusal) -> Any: ...   # None: abort instead (broker)

    async def abort(self, context: grpc.aio.ServicerContext, r: Refusal) -> None: ...


_offset_cache: list = [None, 0.0]   # (minute, offset)


def local_offset_s(now: float) -> float:
    """This machine's local time minus UTC (official clients sign their local wall time); looked up
    once a minute."""
    minute = int(now // 60)
    if _offset_cache[0] != minute:
        _offset_cache[1] = float(time.localtime(now).tm_gmtoff or 0)
        _offset_cache[0] = minute
    return _offset_cache[1]


class RequestAuthInterceptor(grpc.aio.ServerInterceptor):
    """`need_of(method, request, metadata)` -> Need, or None for a method that is not protected
    (`request` None: only whether the method is protected, or a client stream's start)."""

    def __init__(self, cache: Any, need_of: Callable[[str, Any, dict[str, str]], Need | None], refuser: Refuser,
                 cluster_secret: bytes | None, max_skew_s: float, what: str) -> None:
        self.cache = cache
        self.need_of = need_of
        self.refuser = refuser
        self.secret = cluster_secret
        self.max_skew_s = max_skew_s
        self.what = what
        self.stats = {"accepted": 0, "unauthenticated": 0, "forbidden": 0, "node": 0}
        self._verdicts: dict[tuple[str, Need], acl.Verdict] = {}   # for `_verdicts_of` (one snapshot)
        self._verdicts_of: Any = None

    def decide(self, snap: acl.Snapshot, ak: str, need: Need) -> acl.Verdict:
        """`acl.decide` for a need, remembered for this snapshot (the same calls repeat)."""
        if self._verdicts_of is not snap:
            self._verdicts, self._verdicts_of = {}, snap
        v = self._verdicts.get((ak, need))
        if v is None:
            v = acl.decide(snap, ak, need.checks, need.admin_only)
            if v.allowed and need.any_checks:
                tries = [acl.decide(snap, ak, [c]) for c in need.any_checks]
                if not any(t.allowed for t in tries):
                    v = tries[0]
            if len(self._verdicts) >= 10_000:
                self._verdicts.clear()
            self._verdicts[(ak, need)] = v
        return v

    async def check(self, method: str, request: Any, md: dict[str, str], peer: str) -> Refusal | None:
        header = md.get(node_auth.HEADER)
        if header is not None:
            try:
                node_auth.verify(self.secret or b"", method, payload_of(request), header, int(time.time() * 1000))
            except node_auth.NodeAuthError as e:
                return self.refuse(False, f"{e}", method, peer, "")
            self.stats["node"] += 1
            return None
        need = self.need_of(method, request, md)
        if need is None:
            return None
        if need.node_only:
            return self.refuse(False, f"{method} is for cluster nodes only (sign with the cluster secret)",
                                 method, peer, "")
        now = time.time()
        snap = self.cache.snapshot
        try:
            ak = request_auth.verify(md, snap.secret_of, now, self.max_skew_s, local_offset_s(now))
        except request_auth.AuthFailure as e:
            if e.kind != request_auth.Failure.UNKNOWN_KEY or not await self.cache.refresh_unknown(e.access_key):
                return self.refuse(False, f"authentication failed: {e}", method, peer, e.access_key)
            snap = self.cache.snapshot
            try:
                ak = request_auth.verify(md, snap.secret_of, now, self.max_skew_s, local_offset_s(now))
            except request_auth.AuthFailure as e2:
                return self.refuse(False, f"authentication failed: {e2}", method, peer, e2.access_key)
        verdict = self.decide(snap, ak, need)
        if not verdict.allowed:
            return self.refuse(True, f"not authorised: {verdict.reason}", method, peer, ak)
        self.stats["accepted"] += 1
        return None

    def refuse(self, forbidden: bool, message: str, method: str, peer: str, ak: str) -> Refusal:
        self.stats["forbidden" if forbidden else "unauthenticated"] += 1
        log.warning("[%s] %s %s from %s user=%s: %s", self.what, "FORBIDDEN" if forbidden else "UNAUTHENTICATED",
                    method.rpartition("/")[2], peer, ak[:64] or "-", message[:300])
        return Refusal(forbidden, message)

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        if self.need_of(method, None, {}) is None and node_auth.HEADER not in dict(details.invocation_metadata or ()):
            return handler   # not protected (health checks, reflection)
        md = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        refuser = self.refuser
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                r = await self.check(method, request, md, context.peer())
                if r is not None:
                    return await refuser.unary(method, context, r)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request, context):
                r = await self.check(method, request, md, context.peer())
                responses = _refused(refuser, method, r, context) if r is not None else inner_us(request, context)
                async for resp in responses:
                    yield resp

            return grpc.unary_stream_rpc_method_handler(unary_stream, request_deserializer=handler.request_deserializer,
                                                        response_serializer=handler.response_serializer)
        if handler.stream_stream is not None:
            inner_ss = handler.stream_stream

            async def stream_stream(request_iterator, context):
                r = await self.check(method, None, md, context.peer())
                responses = (_refused(refuser, method, r, context) if r is not None
                             else inner_ss(request_iterator, context))
                async for resp in responses:
                    yield resp

            return grpc.stream_stream_rpc_method_handler(stream_stream,
                                                         request_deserializer=handler.request_deserializer,
                                                         response_serializer=handler.response_serializer)
        return handler


async def _refused(refuser: Any, method: str, refusal: Any, context: Any) -> AsyncIterator[Any]:
    """A refused streaming call: the protocol's one refusal item if it has one, else an abort."""
    item = refuser.stream_item(method, refusal)
    if item is None:
        await refuser.abort(context, refusal)
    yield item
