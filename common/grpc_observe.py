"""A gRPC server interceptor that feeds Prometheus: latency per method (histogram), calls and
errors per method, and, for the methods that carry messages, bytes and messages per topic.

Owns: the metric objects of one registry and the wrapping of unary handlers. What counts as
"messages in/out" is described per method by `PAYLOADS`; everything else is timed only.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

# A handler that answers without new messages (a deduplicated retry of a send) sets this to 0 so
# the call is not counted as messages in; it is read in the handler's own context after it returns.
counted_messages: contextvars.ContextVar[int | None] = contextvars.ContextVar("counted_messages", default=None)

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def _send_in(req: Any, resp: Any) -> tuple[str, int, int] | None:
    if getattr(req, "batch", b""):   # a batch record: its count from the answer, its size in bytes
        return req.topic, resp.batch.count if resp is not None else 0, len(req.batch)
    return req.topic, len(req.messages), sum(len(m.body) for m in req.messages)


def _pull_out(req: Any, resp: Any) -> tuple[str, int, int] | None:
    msgs = getattr(resp, "messages", ())
    n, size = len(msgs), sum(len(m.body) for m in msgs)
    batches = getattr(resp, "batches", ())
    if batches:   # whole batch records: the messages of the asked-for window, the records' bytes
        from orbitmq.broker.store import batch_record as br

        for b in batches:
            h = br.header(b)
            n += max(0, min(resp.next_offset, h[br.B_BASE] + h[br.B_COUNT]) - max(req.queue_offset, h[br.B_BASE]))
            size += len(b)
    return req.topic, n, size


# method name -> (direction, extractor(request, response) -> (topic, messages, bytes))
PAYLOADS: dict[str, tuple[str, Callable[[Any, Any], tuple[str, int, int] | None]]] = {
    "SendMessage": ("in", _send_in),
    "PullMessage": ("out", _pull_out),
}


class Observer(grpc.aio.ServerInterceptor):
    """Install with `grpc.aio.server(interceptors=[Observer(registry, "broker")])`."""

    def __init__(self, registry: CollectorRegistry, component: str) -> None:
        self.latency = Histogram("orbitmq_rpc_seconds", "server-side latency of gRPC calls",
                                 ["component", "method"], buckets=BUCKETS, registry=registry)
        self.errors = Counter("orbitmq_rpc_errors_total", "gRPC calls that ended with an error status",
                              ["component", "method"], registry=registry)
        self.messages = Counter("orbitmq_messages_total", "messages in (stored) and out (delivered) per topic",
                                ["direction", "topic"], registry=registry)
        self.bytes = Counter("orbitmq_message_bytes_total", "message body bytes in and out per topic",
                             ["direction", "topic"], registry=registry)
        self.component = component

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary
        payload = PAYLOADS.get(method)
        latency = self.latency.labels(self.component, method)
        errors = self.errors.labels(self.component, method)

        async def observed(request, context):
            t0 = time.perf_counter()
            counted_messages.set(None)
            try:
                resp = await inner(request, context)
            except BaseException:
                errors.inc()
                raise
            finally:
                latency.observe(time.perf_counter() - t0)
            if payload is not None and resp is not None:
                try:
                    got = payload[1](request, resp)
                except Exception:  # noqa: BLE001 - a malformed request was answered already
                    got = None
                if got is not None and counted_messages.get() is not None:
                    got = (got[0], counted_messages.get(), 0)
                if got is not None and got[1]:
                    self.messages.labels(payload[0], got[0]).inc(got[1])
                    self.bytes.labels(payload[0], got[0]).inc(got[2])
            return resp

        return grpc.unary_unary_rpc_method_handler(observed, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)
