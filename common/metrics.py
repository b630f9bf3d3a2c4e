"""Prometheus metrics of one process: its own registry, an HTTP endpoint (`/metrics`) and the
helpers the per-component collectors use. Collectors read state when scraped, so nothing on a
hot path pays for metrics except the gRPC observer's counters (`grpc_observe`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from orbitmq.common.net import split_addr

log = logging.getLogger("orbitmq.metrics")

Row = tuple[str, str, dict[str, str], float]   # (name, help, labels, value)


@dataclass
class MetricsEndpoint:
    """A running `/metrics` HTTP server; `stop()` shuts it down."""

    address: str
    registry: CollectorRegistry
    _server: Any = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=False)


def serve(listen: str, registry: CollectorRegistry) -> MetricsEndpoint:
    """Serve `registry` at http://listen/metrics (a daemon thread); raises OSError if the port is taken."""
    host, port = split_addr(listen)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return MetricsEndpoint(f"{host}:{server.server_port}", registry, server)


class SnapshotCollector(Collector):
    """Gauges computed at scrape time from `snapshot()`: an iterable of
    (name, help, labels dict, value). A failing snapshot yields nothing rather than a broken scrape."""

    def __init__(self, snapshot: Callable[[], Iterable[Row]]) -> None:
        self.snapshot = snapshot

    def collect(self):
        try:
            rows = list(self.snapshot())
        except Exception:  # noqa: BLE001 - a scrape must not fail because a component is mid-change
            log.exception("metrics snapshot failed")
            return
        families: dict[str, GaugeMetricFamily] = {}
        label_names: dict[str, list[str]] = {}
        for name, help_, labels, value in rows:
            if not isinstance(value, int | float):
                log.warning("metric %s has a non-numeric value %r; skipped", name, value)
                continue
            fam = families.get(name)
            if fam is None:
                label_names[name] = sorted(labels)
                fam = families[name] = GaugeMetricFamily(name, help_, labels=label_names[name])
            fam.add_metric([str(labels[k]) for k in label_names[name]], float(value))
        yield from families.values()
