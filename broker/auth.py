"""Broker side of user authentication: the users/ACL cache from the controllers and the server
interceptor (common/request_auth_server.py) with the broker's answers: a refusal aborts the call
with UNAUTHENTICATED (`orbitmq-error` UNAUTHENTICATED) or PERMISSION_DENIED (FORBIDDEN)."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from orbitmq.broker.auth_checks import need_of
from orbitmq.common.error_codes import ErrorCode
from orbitmq.common.grpc_errors import abort
from orbitmq.common.node_auth import load_secret
from orbitmq.common.request_auth_server import Refusal, RequestAuthInterceptor

log = logging.getLogger("orbitmq.broker.auth")


class BrokerRefuser:
    async def abort(self, context: grpc.aio.ServicerContext, r: Refusal) -> None:
        await abort(context, ErrorCode.FORBIDDEN if r.forbidden else ErrorCode.UNAUTHENTICATED, r.message)

    async def unary(self, method: str, context: grpc.aio.ServicerContext, r: Refusal) -> Any:
        await self.abort(context, r)

    def stream_item(self, method: str, r: Refusal) -> Any:
        return None


async def start_auth(cfg: Any, what: str = "broker") -> tuple[RequestAuthInterceptor | None, Any]:
    """(interceptor, cache) when `cfg.auth_enabled`, else (None, None). The cache is started."""
    if not cfg.auth_enabled:
        return None, None
    from orbitmq.controller.auth_cache import AuthCache, tls_of

    secret = load_secret(cfg.cluster_secret_file)
    cache = AuthCache(cfg.controllers, secret, cfg.auth_refresh_s, tls_of(cfg))
    await cache.start()
    log.info("request authentication on: users and ACLs from %s (version %d)", ",".join(cfg.controllers),
             cache.snapshot.version)
    return RequestAuthInterceptor(cache, need_of, BrokerRefuser(), secret, cfg.auth_max_skew_s, what), cache
