"""One process's observability, wired the same way by every server: a Prometheus registry with
the gRPC observer and a component's snapshot collector, the gRPC health service, and the
`/metrics` HTTP endpoint when `metrics_listen` is set."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import grpc

from orbitmq.common import metrics
from orbitmq.common.grpc_observe import Observer
from orbitmq.common.health import Health


class Observability:
    """Create before the gRPC server (its `observer` goes in the server's interceptors), `attach`
    after adding the services, `await started()` once serving, `await stop()` first on shutdown."""

    def __init__(self, component: str, metrics_listen: str = "") -> None:
        self.component = component
        self.metrics_listen = metrics_listen
        self.registry = metrics.new_registry()
        self.observer = Observer(self.registry, component)
        self.health: Health | None = None
        self.endpoint: metrics.MetricsEndpoint | None = None

    def attach(self, server: grpc.aio.Server, services: list[str],
               snapshot: Callable[[], Iterable[metrics.Row]]) -> None:
        self.health = Health(server, services)
        self.registry.register(metrics.SnapshotCollector(snapshot))

    async def started(self) -> None:
        if self.health is not None:
            await self.health.set(True)
        if self.metrics_listen and self.endpoint is None:
            self.endpoint = metrics.serve(self.metrics_listen, self.registry)

    async def stop(self) -> None:
        if self.health is not None:
            await self.health.set(False)
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None
