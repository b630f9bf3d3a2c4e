"""Every process answers gRPC health checks and serves Prometheus metrics: a controller, a name
server and a broker in controller mode, real processes scraped over HTTP."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orbitmq.common import net
from orbitmq.common.proc import wait_until

pytestmark = pytest.mark.process


def _scrape(addr: str) -> dict[tuple[str, tuple], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _get(samples, name: str, **labels) -> float | None:
    hits = [v for (n, ls), v in samples.items() if n == name and all((k, str(x)) in ls for k, x in labels.items())]
    return sum(hits) if hits else None


def _serving(addr: str, service: str) -> bool:
    r = health_pb2_grpc.HealthStub(grpc.insecure_channel(addr)).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5)
    return r.status == health_pb2.HealthCheckResponse.SERVING


def test_controller_namesrv_and_broker_health_and_metrics(procs, tmp_path):
    ports = net.free_ports(8)
    ctl, raft, ctl_m, ns, ns_m, br, br_ha, br_m = (f"127.0.0.1:{p}" for p in ports)
    procs.start("controller", ["controller", "--listen", ctl, "--raft-addr", raft, "--data-dir", str(tmp_path / "c"),
                               "--set", f"metrics_listen={ctl_m}"])
    procs.start("namesrv", ["namesrv", "--listen", ns, "--set", f"metrics_listen={ns_m}"])
    for a in (ctl, ns):
        net.wait_for_port(a, 30)
    procs.start("broker", ["broker", "--listen", br, "--namesrv", ns, "--store-dir", str(tmp_path / "b"),
                           "--cluster", "c1", "--broker-set", "bs1", "--set", "ha_mode=controller",
                           "--set", f"ha_listen={br_ha}", "--set", f"controllers={ctl}",
                           "--set", f"metrics_listen={br_m}"])
    wait_until(lambda: _get(_scrape(ctl_m), "orbitmq_controller_master_epoch", broker_set="bs1") == 1, 60,
               what="controller reports bs1's first master")
    c = _scrape(ctl_m)
    assert _get(c, "orbitmq_controller_leader") == 1
    assert _get(c, "orbitmq_controller_raft_term") >= 1
    assert _get(c, "orbitmq_controller_master_id", broker_set="bs1") >= 1
    assert _get(c, "orbitmq_controller_sync_state_set_size", broker_set="bs1") == 1
    assert _get(c, "orbitmq_controller_master_changes", broker_set="bs1") >= 1
    assert _get(c, "orbitmq_rpc_seconds_count", method="RegisterBroker") >= 1
    wait_until(lambda: _get(_scrape(ns_m), "orbitmq_namesrv_master_epoch", broker_set="bs1") == 1, 60,
               what="name server routes bs1's master at epoch 1")
    # one replica, not two: the entry it registered before the controller gave it its id is dropped
    wait_until(lambda: _get(_scrape(ns_m), "orbitmq_namesrv_brokers") == 1, 60, what="no phantom replica")
    wait_until(lambda: _get(_scrape(br_m), "orbitmq_broker_role", role="MASTER") == 1, 60, what="broker is master")
    b = _scrape(br_m)
    assert _get(b, "orbitmq_broker_epoch") == 1 and _get(b, "orbitmq_broker_fenced") == 0
    assert _get(b, "orbitmq_sync_state_set_size") == 1
    assert _serving(ctl, "orbitmq.v1.Controller") and _serving(ns, "orbitmq.v1.NameServer")
    assert _serving(br, "") and _serving(br, "orbitmq.v1.Broker")
