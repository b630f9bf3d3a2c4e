"""Proxy side of user authentication: the same interceptor as the broker's
(common/request_auth_server.py) with the RocketMQ 5 protocol's answers. A refusal is a response
whose `Status` is UNAUTHORIZED (40100) both when the signature fails (missing, malformed, unknown
key, wrong secret, stale date) and when the ACL does not allow the request, as RocketMQ's proxy
answers, so clients behave the same; the reason is in `message` ("forbidden: ..." for an ACL
denial). A stream gets one such item and ends. The official clients raise UnauthorizedException."""

from __future__ import annotations

from typing import Any

import grpc

from orbitmq.common.node_auth import load_secret
from orbitmq.common.request_auth_server import Refusal, RequestAuthInterceptor
from orbitmq.protos import rocketmq_v2_definition_pb2 as d
from orbitmq.protos import rocketmq_v2_service_pb2 as s
from orbitmq.proxy.auth_checks import need_of

_METHODS = s.DESCRIPTOR.services_by_name["MessagingService"].methods_by_name


def _status(r: Refusal) -> d.Status:
    message = f"forbidden: {r.message}" if r.forbidden else r.message
    return d.Status(code=d.UNAUTHORIZED, message=message)


def _response(method: str, r: Refusal) -> Any:
    cls = getattr(s, _METHODS[method.rpartition("/")[2]].output_type.name)
    return cls(status=_status(r))


class ProxyRefuser:
    async def abort(self, context: grpc.aio.ServicerContext, r: Refusal) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, r.message)

    async def unary(self, method: str, context: grpc.aio.ServicerContext, r: Refusal) -> Any:
        return _response(method, r)

    def stream_item(self, method: str, r: Refusal) -> Any:
        return _response(method, r)


async def start_auth(cfg: Any) -> tuple[RequestAuthInterceptor | None, Any]:
    """(interceptor, started cache) when `cfg.auth_enabled`, else (None, None)."""
    if not cfg.auth_enabled:
        return None, None
    from orbitmq.controller.auth_cache import AuthCache, tls_of

    secret = load_secret(cfg.cluster_secret_file)
    cache = AuthCache(cfg.controllers, secret, cfg.auth_refresh_s, tls_of(cfg))
    await cache.start()
    return RequestAuthInterceptor(cache, need_of, ProxyRefuser(), secret, cfg.auth_max_skew_s, "proxy"), cache
