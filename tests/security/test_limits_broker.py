"""Load limits of a real broker process: in-flight requests per connection and in all
(TOO_MANY_REQUESTS, the producer retries it), writes refused past the disk ratio (DISK_FULL, reads
and stored messages intact), and a deduplicated retry counted once in the metrics."""

from __future__ import annotations

import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from orbitmq.client import Message, Producer
from orbitmq.common import net
from orbitmq.common.grpc_errors import ERROR_KEY
from orbitmq.common.proc import wait_until
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

pytestmark = pytest.mark.process


def metric(maddr: str, name: str) -> float:
    text = urllib.request.urlopen(f"http://{maddr}/metrics", timeout=10).read().decode()
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                total += s.value
    return total


def code(e: grpc.RpcError) -> str:
    return dict(e.trailing_metadata() or ()).get(ERROR_KEY, "")


def start_broker(procs, tmp_path, name: str, *settings: str, namesrv: str = "") -> tuple[str, str]:
    addr, maddr = f"127.0.0.1:{net.free_port()}", f"127.0.0.1:{net.free_port()}"
    args = ["broker", "--listen", addr, "--store-dir", str(tmp_path / "store"), "--set", f"metrics_listen={maddr}"]
    if namesrv:
        args += ["--namesrv", namesrv]
    for s in settings:
        args += ["--set", s]
    procs.start(name, args)
    net.wait_for_port(addr, 30)
    net.wait_for_port(maddr, 30)
    return addr, maddr


def create_topic(stub, topic: str = "L") -> None:
    stub.CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
        topic=topic, read_queues=1, write_queues=1, perm=6)), timeout=10)


def park(stub, ms: int):
    """A long-polling pull on an empty queue: one request in flight for `ms`."""
    return stub.PullMessage.future(broker_pb2.PullRequest(group="g", topic="L", queue_id=0, queue_offset=0,
                                                          max_messages=1, long_poll_ms=ms), timeout=ms / 1000 + 30)


def test_inflight_limits_answer_too_many_requests_and_the_producer_retries(procs, tmp_path):
    ns = f"127.0.0.1:{net.free_port()}"
    procs.start("namesrv", ["namesrv", "--listen", ns])
    net.wait_for_port(ns, 30)
    addr, maddr = start_broker(procs, tmp_path, "broker", "max_inflight_per_connection=2",
                               "max_inflight_requests=3", namesrv=ns)
    a, b, c = (grpc.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(3))
    sa, sb, sc = (broker_pb2_grpc.BrokerStub(ch) for ch in (a, b, c))
    try:
        create_topic(sc)
        held = [park(sa, 3000), park(sa, 3000)]
        wait_until(lambda: metric(maddr, "orbitmq_broker_requests_in_flight") == 2, 30, 0.05, "2 parked pulls")
        with pytest.raises(grpc.RpcError) as ei:
            sa.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=10)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and code(ei.value) == "TOO_MANY_REQUESTS"
        assert "on this connection" in ei.value.details()
        sb.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=10)   # another connection is served
        held.append(park(sb, 3000))
        wait_until(lambda: metric(maddr, "orbitmq_broker_requests_in_flight") == 3, 30, 0.05, "3 parked pulls")
        with pytest.raises(grpc.RpcError) as ei:
            sc.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=10)
        assert code(ei.value) == "TOO_MANY_REQUESTS" and "on this server" in ei.value.details()
        # health checks are never limited
        r = health_pb2_grpc.HealthStub(c).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        refused_before = metric(maddr, "orbitmq_broker_requests_refused_too_many")
        # our producer retries TOO_MANY_REQUESTS with backoff within its deadline: it gets through
        # once the parked pulls end (3 s), within send_timeout_s
        with Producer(ns, send_timeout_s=10.0) as p:
            wait_until(lambda: metric(maddr, "orbitmq_broker_requests_in_flight") >= 3, 5, 0.05, "still held")
            t0 = time.monotonic()
            receipt = p.send(Message("L", b"through"))
            assert receipt.queue_offset == 0
        assert metric(maddr, "orbitmq_broker_requests_refused_too_many") > refused_before
        print(f"producer send got through after {time.monotonic() - t0:.2f}s of TOO_MANY_REQUESTS")
        for f in held:
            f.result()
    finally:
        for ch in (a, b, c):
            ch.close()


def test_disk_ratio_refuses_writes_reads_go_on_nothing_lost(procs, tmp_path):
    addr, _ = start_broker(procs, tmp_path, "b1")
    ch = grpc.insecure_channel(addr)
    stub = broker_pb2_grpc.BrokerStub(ch)
    create_topic(stub)
    for i in range(5):
        stub.SendMessage(broker_pb2.SendRequest(topic="L", queue_id=0, messages=[
            common_pb2.Message(topic="L", body=f"kept-{i}".encode())]), timeout=10)
    ch.close()
    procs.children[-1].stop()
    # the same store, now with a disk ratio it is already past
    addr, maddr = start_broker(procs, tmp_path, "b2", "disk_refuse_ratio=0.000001")
    ch = grpc.insecure_channel(addr)
    stub = broker_pb2_grpc.BrokerStub(ch)
    with pytest.raises(grpc.RpcError) as ei:
        stub.SendMessage(broker_pb2.SendRequest(topic="L", queue_id=0, messages=[
            common_pb2.Message(topic="L", body=b"refused")]), timeout=10)
    md = dict(ei.value.trailing_metadata() or ())
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and md[ERROR_KEY] == "DISK_FULL"
    assert md.get("orbitmq-stored") == "0" and "full" in ei.value.details()
    r = stub.PullMessage(broker_pb2.PullRequest(group="g", topic="L", queue_id=0, queue_offset=0, max_messages=50),
                         timeout=10)
    assert [m.body for m in r.messages] == [f"kept-{i}".encode() for i in range(5)]
    assert metric(maddr, "orbitmq_broker_sends_refused_disk_full") == 1
    ch.close()
    procs.children[-1].stop()
    addr, _ = start_broker(procs, tmp_path, "b3")
    ch = grpc.insecure_channel(addr)
    stub = broker_pb2_grpc.BrokerStub(ch)
    stub.SendMessage(broker_pb2.SendRequest(topic="L", queue_id=0, messages=[
        common_pb2.Message(topic="L", body=b"after")]), timeout=10)
    r = stub.PullMessage(broker_pb2.PullRequest(group="g", topic="L", queue_id=0, queue_offset=0, max_messages=50),
                         timeout=10)
    assert [m.body for m in r.messages] == [*(f"kept-{i}".encode() for i in range(5)), b"after"]
    ch.close()


def test_deduplicated_retry_is_not_counted_as_a_new_message(procs, tmp_path):
    addr, maddr = start_broker(procs, tmp_path, "broker")
    ch = grpc.insecure_channel(addr)
    stub = broker_pb2_grpc.BrokerStub(ch)
    create_topic(stub)
    req = broker_pb2.SendRequest(topic="L", queue_id=0, messages=[
        common_pb2.Message(topic="L", body=b"once", msg_id="retry-me-1"),
        common_pb2.Message(topic="L", body=b"twice", msg_id="retry-me-2")])
    first = stub.SendMessage(req, timeout=10)
    again = stub.SendMessage(req, timeout=10)   # the producer's retry of the same send
    assert [r.queue_offset for r in again.results] == [r.queue_offset for r in first.results]
    st = dict(stub.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=10).stats)
    assert st["msgs_put"] == "2" and st["duplicates"] == "2"
    assert metric(maddr, "orbitmq_messages_total") == 2
    assert metric(maddr, "orbitmq_message_bytes_total") == len(b"once") + len(b"twice")
    assert metric(maddr, "orbitmq_broker_msgs_put") == 2
    ch.close()
