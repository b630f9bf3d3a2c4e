"""Who is on a framed connection and what each of its requests may do (broker side, `auth_enabled`).

A framed connection signs once, in its HELLO (common/framed_auth.py): as a user (verified like a
signed gRPC call: same users, secrets and skew rule, an unknown access key refreshes the users
once) or as a cluster node (the cluster secret over a one-time nonce). Each request is then
checked like a gRPC call of that user: `broker/auth_checks.need_of` says what it needs and the
gRPC interceptor's `decide` (same cache, same ACL snapshot) whether the user may; a node's
requests pass. A user deleted, or whose secret changed, since the HELLO is refused from then on
(UNAUTHENTICATED; a client reconnects with its current credentials). Refusals carry the gRPC
path's error names (UNAUTHENTICATED, FORBIDDEN) and are logged and counted by the interceptor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from orbitmq.broker.auth_checks import BROKER, need_of
from orbitmq.common import framed_auth, node_auth, request_auth
from orbitmq.common.error_codes import ErrorCode
from orbitmq.common.framing import ErrorInfo
from orbitmq.common.request_auth_server import RequestAuthInterceptor, local_offset_s


@dataclass(frozen=True, slots=True)
class Identity:
    """A connection's proven identity: a node, or a user with the secret its HELLO was verified with."""

    node: bool
    access_key: str = ""
    secret: str = ""


class NeedsRefresh(Exception):  # noqa: N818 - not an error: the HELLO is decided after a refresh
    """The HELLO names an access key the cache does not know: refresh once, then decide again."""

    def __init__(self, access_key: str) -> None:
        super().__init__(access_key)
        self.access_key = access_key


class FramedAuth:
    """`hello(fields, peer)` -> Identity or a refusal; `check(identity, method, request, peer)` per request."""

    def __init__(self, interceptor: RequestAuthInterceptor) -> None:
        self.auth = interceptor
        self.nonces = framed_auth.NonceWindow()

    def _refusal(self, forbidden: bool, message: str, method: str, peer: str, ak: str) -> ErrorInfo:
        r = self.auth.refuse(forbidden, message, method, peer, ak)
        return ErrorInfo(ErrorCode.FORBIDDEN if r.forbidden else ErrorCode.UNAUTHENTICATED, r.message)

    def hello(self, fields: dict[str, Any], peer: str, refreshed: bool = False) -> Identity | ErrorInfo:
        """The identity a HELLO proves, or the refusal. Raises NeedsRefresh (once: not when
        `refreshed`) for an access key the users cache does not know yet."""
        method = framed_auth.HELLO_METHOD
        if framed_auth.NODE_FIELD in fields:
            if not self.auth.secret:
                return self._refusal(False, "node HELLO: this broker has no cluster secret", method, peer, "")
            try:
                framed_auth.verify_node(self.auth.secret, fields, int(time.time() * 1000), self.nonces)
            except node_auth.NodeAuthError as e:
                return self._refusal(False, str(e), method, peer, "")
            self.auth.stats["node"] += 1
            return Identity(True)
        md = {k: v for k, v in fields.items() if isinstance(v, str)}
        now = time.time()
        snap = self.auth.cache.snapshot
        try:
            ak = request_auth.verify(md, snap.secret_of, now, self.auth.max_skew_s, local_offset_s(now))
        except request_auth.AuthFailure as e:
            if e.kind == request_auth.Failure.UNKNOWN_KEY and not refreshed:
                raise NeedsRefresh(e.access_key) from None
            why = ("the framed port needs a signed HELLO (credentials), or use gRPC"
                   if e.kind == request_auth.Failure.MISSING else f"authentication failed: {e}")
            return self._refusal(False, why, method, peer, e.access_key)
        return Identity(False, ak, snap.secret_of(ak) or "")

    def check(self, ident: Identity, name: str, request: Any, peer: str) -> ErrorInfo | None:
        """None if `ident` may call Broker method `name` with `request`, else the refusal."""
        if ident.node:
            return None
        method = BROKER + name
        need = need_of(method, request)
        if need is None:
            return None
        if need.node_only:
            return self._refusal(False, f"{method} is for cluster nodes only (sign with the cluster secret)",
                                 method, peer, ident.access_key)
        snap = self.auth.cache.snapshot
        if snap.secret_of(ident.access_key) != ident.secret:
            return self._refusal(False, f"user {ident.access_key[:64]!r} was deleted or its secret changed since "
                                 "this connection signed in", method, peer, ident.access_key)
        verdict = self.auth.decide(snap, ident.access_key, need)
        if not verdict.allowed:
            return self._refusal(True, f"not authorised: {verdict.reason}", method, peer, ident.access_key)
        self.auth.stats["accepted"] += 1
        return None
