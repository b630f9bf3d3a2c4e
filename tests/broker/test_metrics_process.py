"""A broker's /metrics (Prometheus text, scraped over HTTP) and gRPC health, on a real process."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from orbitmq.common import net
from orbitmq.common.proc import wait_until
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

pytestmark = pytest.mark.process


def scrape(addr: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name: str, **labels) -> float:
    hits = [v for (n, ls), v in samples.items() if n == name and all((k, str(x)) in ls for k, x in labels.items())]
    assert hits, f"no sample {name} {labels}"
    return sum(hits)


def test_broker_metrics_and_health(procs, tmp_path):
    addr, maddr = f"127.0.0.1:{net.free_port()}", f"127.0.0.1:{net.free_port()}"
    procs.start("broker", ["broker", "--listen", addr, "--store-dir", str(tmp_path / "s"), "--cluster", "c1",
                           "--broker-set", "bs1", "--set", f"metrics_listen={maddr}"])
    net.wait_for_port(addr, 30)
    net.wait_for_port(maddr, 30)
    ch = grpc.insecure_channel(addr)
    health = health_pb2_grpc.HealthStub(ch)
    for service in ("", "orbitmq.v1.Broker"):
        r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    b = broker_pb2_grpc.BrokerStub(ch)
    b.CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
        topic="M", read_queues=1, write_queues=1, perm=6)), timeout=10)
    bodies = [b"x" * 100, b"y" * 28, b"z" * 900]
    for body in bodies:
        b.SendMessage(broker_pb2.SendRequest(topic="M", queue_id=0, messages=[
            common_pb2.Message(topic="M", body=body)]), timeout=10)
    with pytest.raises(grpc.RpcError):
        b.SendMessage(broker_pb2.SendRequest(topic="nope", queue_id=0, messages=[
            common_pb2.Message(topic="nope", body=b"q")]), timeout=10)
    wait_until(lambda: b.PullMessage(broker_pb2.PullRequest(group="g", topic="M", queue_id=0, queue_offset=0,
                                                            max_messages=10), timeout=10).messages, 30, what="pull")
    s = scrape(maddr)
    assert value(s, "orbitmq_messages_total", direction="in", topic="M") == 3
    assert value(s, "orbitmq_message_bytes_total", direction="in", topic="M") == sum(map(len, bodies))
    assert value(s, "orbitmq_message_bytes_total", direction="out", topic="M") >= sum(map(len, bodies))
    assert value(s, "orbitmq_rpc_seconds_count", method="SendMessage") == 4
    assert value(s, "orbitmq_rpc_errors_total", method="SendMessage") == 1
    assert value(s, "orbitmq_topic_stored_messages", topic="M") == 3
    assert value(s, "orbitmq_broker_role", role="STANDALONE") == 1
    assert value(s, "orbitmq_gc_frozen_objects") > 10_000     # its startup objects (common/gc_freeze.py)
    assert value(s, "orbitmq_store_max_physical_offset") > sum(map(len, bodies))
    assert 0 < value(s, "orbitmq_store_disk_used_ratio") < 1
