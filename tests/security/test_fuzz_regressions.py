"""The bugs the fuzzers found, one regression test each, on real processes:
- an error quoting a 70,000-character name overflowed the client's 16 KiB trailer limit: the
  client got RESOURCE_EXHAUSTED with no `orbitmq-error` (details are now clipped);
- undecodable bytes on BrokerPop, or inside a client stream (name server KeepAlive, controller
  BrokerSession), were a bare UNKNOWN, and a malformed message in BrokerSession left the call
  hanging until its deadline (now BAD_REQUEST at once);
- the proxy answered undecodable requests UNKNOWN and had no gRPC health service."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orbitmq.common import net
from orbitmq.common.proc import wait_until
from orbitmq.protos import broker_pb2, broker_pb2_grpc, controller_pb2, controller_pb2_grpc

pytestmark = pytest.mark.process

GARBAGE = b"\x00\xff\x07garbage"


def error_of(e: grpc.RpcError) -> str:
    return dict(e.trailing_metadata() or ()).get("orbitmq-error", "")


def test_error_quoting_a_huge_name_still_carries_its_code(procs, tmp_path):
    addr = f"127.0.0.1:{net.free_port()}"
    procs.start("broker", ["broker", "--listen", addr, "--store-dir", str(tmp_path / "s")])
    net.wait_for_port(addr, 30)
    with grpc.insecure_channel(addr) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        with pytest.raises(grpc.RpcError) as ei:
            stub.GetOffsetRange(broker_pb2.GetOffsetRangeRequest(topic="x" * 70_000, queue_id=0), timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()[:200]
        assert error_of(ei.value) == "BAD_TOPIC_NAME"
        assert "more characters" in ei.value.details() and len(ei.value.details()) < 4000
        with pytest.raises(grpc.RpcError) as ei:   # BrokerPop shares the server: undecodable -> BAD_REQUEST
            ch.unary_unary("/orbitmq.v1.BrokerPop/Pop")(GARBAGE, timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_of(ei.value) == "BAD_REQUEST"


def test_malformed_messages_in_client_streams_are_refused_at_once(procs, tmp_path):
    ns, ctl, raft = (f"127.0.0.1:{net.free_port()}" for _ in range(3))
    procs.start("namesrv", ["namesrv", "--listen", ns])
    procs.start("controller", ["controller", "--listen", ctl, "--raft-addr", raft, "--data-dir", str(tmp_path / "c")])
    net.wait_for_port(ns, 30)
    net.wait_for_port(ctl, 30)
    with grpc.insecure_channel(ctl) as ch:   # the controller serves brokers once its Raft group has a leader
        stub = controller_pb2_grpc.ControllerStub(ch)
        wait_until(lambda: stub.GetReplicaInfo(controller_pb2.CtlGetReplicaInfoRequest(cluster="c", broker_set="s"),
                                               timeout=5) is not None, 60, 0.2, "a controller leader")
    for addr, path in ((ns, "/orbitmq.v1.NameServer/KeepAlive"), (ctl, "/orbitmq.v1.Controller/BrokerSession")):
        with grpc.insecure_channel(addr) as ch, pytest.raises(grpc.RpcError) as ei:
            for _ in ch.stream_stream(path)(iter([GARBAGE]), timeout=20):
                pass
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, ei.value.code(), ei.value.details())
        assert error_of(ei.value) == "BAD_REQUEST"


def test_proxy_refuses_undecodable_requests_and_answers_health(procs, tmp_path):
    addr = f"127.0.0.1:{net.free_port()}"
    procs.start("proxy", ["proxy", "--mode", "local", "--listen", addr, "--data", str(tmp_path / "px")])
    net.wait_for_port(addr, 30)
    with grpc.insecure_channel(addr) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            ch.unary_unary("/apache.rocketmq.v2.MessagingService/QueryRoute")(GARBAGE, timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_of(ei.value) == "BAD_REQUEST"
        for service in ("", "apache.rocketmq.v2.MessagingService"):
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
