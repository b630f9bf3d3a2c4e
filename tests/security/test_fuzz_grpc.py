"""Hypothesis fuzzing of every gRPC method of every server, on real processes: a controller, a name
server, a broker (controller mode, master of its set) and a proxy (local mode).

Each input is random bytes, a valid request with absurd fields (negative offsets, huge counts,
empty and oversized names, unknown enum values, nested messages), or such a request with bytes
flipped or cut. Every answer must come within the deadline (no hang), be OK or a typed error
(never UNKNOWN or INTERNAL; our servers name the error in `orbitmq-error`), and the process must
still answer health checks. Afterwards what was stored before is still there: the broker's
messages, the proxy's messages, the controller's broker set, the name server's route.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from fuzzing import COUNTS, OUTCOMES, Method, call, methods_of, request_bytes
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbitmq.common import net, proc
from orbitmq.protos import (
    broker_pb2,
    broker_pb2_grpc,
    broker_pop_pb2,
    common_pb2,
    controller_pb2,
    controller_pb2_grpc,
    namesrv_pb2,
    namesrv_pb2_grpc,
)

pytestmark = pytest.mark.process

EXAMPLES = 12           # per method: about 60 methods, under a minute in all here
DEADLINE_S = 10.0      # every call, streams included (we half-close after our messages): no hangs
KEPT = "fuzz-kept-7f3a"
PROXY_MD = (("x-mq-client-id", "fuzz-client"), ("x-mq-language", "PYTHON"))


def v2():
    """The RocketMQ 5 protocol modules: the official client's when installed (it and OrbitMQ's copy
    cannot share a process, and other tests import the official one), else OrbitMQ's."""
    try:
        from rocketmq.grpc_protocol import definition_pb2, service_pb2
    except ImportError:
        from orbitmq.protos import rocketmq_v2_definition_pb2 as definition_pb2
        from orbitmq.protos import rocketmq_v2_service_pb2 as service_pb2
    return service_pb2, definition_pb2


class Servers:
    def __init__(self, root: Path) -> None:
        self.children: list[proc.Child] = []
        self.ctl, raft = f"127.0.0.1:{net.free_port()}", f"127.0.0.1:{net.free_port()}"
        self.ns = f"127.0.0.1:{net.free_port()}"
        self.broker, ha = f"127.0.0.1:{net.free_port()}", f"127.0.0.1:{net.free_port()}"
        self.proxy = f"127.0.0.1:{net.free_port()}"
        self._start(root, "controller", ["controller", "--node-id", "c1", "--listen", self.ctl, "--raft-addr", raft,
                                         "--data-dir", str(root / "ctl")])
        self._start(root, "namesrv", ["namesrv", "--listen", self.ns])
        self._start(root, "broker", ["broker", "--listen", self.broker, "--namesrv", self.ns, "--store-dir",
                                     str(root / "store"), "--cluster", "fzc", "--broker-set", "fzs",
                                     "--set", "ha_mode=controller", "--set", f"ha_listen={ha}",
                                     "--set", f"controllers={self.ctl}", "--set", "long_poll_max_ms=300",
                                     "--set", "register_interval_s=2"])
        self._start(root, "proxy", ["proxy", "--mode", "local", "--listen", self.proxy, "--data", str(root / "px"),
                                    "--auto-create-topics", "--group", "fuzz-g", "--group", "fuzz-kept-g",
                                    "--set", "max_long_polling_s=0.5"])
        for a in (self.ctl, self.ns, self.broker, self.proxy):
            net.wait_for_port(a, 60)
        self.channels = {a: grpc.insecure_channel(a, options=[("grpc.max_send_message_length", 64 << 20),
                                                              ("grpc.max_receive_message_length", 64 << 20)])
                         for a in (self.ctl, self.ns, self.broker, self.proxy)}
        self.b = broker_pb2_grpc.BrokerStub(self.channels[self.broker])
        proc.wait_until(lambda: self.b.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=5).role
                        == "MASTER", 60, 0.2, "the broker to be master of its set")
        for t in (KEPT, "fuzz-play"):
            self.b.CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
                topic=t, read_queues=2, write_queues=2, perm=6)), timeout=10)
        self.b.CreateSubscriptionGroup(broker_pb2.CreateSubscriptionGroupRequest(
            config=common_pb2.SubscriptionGroupConfig(group="fuzz-g", consume_enable=True)), timeout=10)
        self.kept = [f"kept-{i}".encode() for i in range(10)]
        for i, body in enumerate(self.kept):
            self.b.SendMessage(broker_pb2.SendRequest(topic=KEPT, queue_id=i % 2, messages=[
                common_pb2.Message(topic=KEPT, body=body, keys=[f"k{i}"])]), timeout=10)
            self.b.SendMessage(broker_pb2.SendRequest(topic="fuzz-play", queue_id=i % 2, messages=[
                common_pb2.Message(topic="fuzz-play", body=body)]), timeout=10)
        s, d = v2()
        self.v2s, self.v2d = s, d
        px = self.channels[self.proxy]
        self.proxy_kept = [f"px-kept-{i}".encode() for i in range(5)]
        for i, body in enumerate(self.proxy_kept):
            m = d.Message(topic=d.Resource(name=KEPT), body=body)
            m.system_properties.message_id = f"0102AB{i:02d}"
            m.system_properties.message_type = d.NORMAL
            r = px.unary_unary(f"/{s.DESCRIPTOR.services_by_name['MessagingService'].full_name}/SendMessage",
                               request_serializer=s.SendMessageRequest.SerializeToString,
                               response_deserializer=s.SendMessageResponse.FromString)(
                s.SendMessageRequest(messages=[m]), metadata=PROXY_MD, timeout=10)
            assert d.Code.Name(r.status.code) == "OK", r
        proc.wait_until(self._routed, 30, 0.2, "the name server to route the kept topic")

    def _start(self, root: Path, name: str, args: list[str]) -> None:
        self.children.append(proc.start(name, proc.orbitmq_argv(*args), log_path=root / f"{name}.log"))

    def _routed(self) -> bool:
        ns = namesrv_pb2_grpc.NameServerStub(self.channels[self.ns])
        r = ns.GetTopicRoute(namesrv_pb2.GetTopicRouteRequest(topic=KEPT), timeout=5)
        return any(b.broker_set == "fzs" for b in r.broker_sets)

    def healthy(self, addr: str) -> bool:
        r = health_pb2_grpc.HealthStub(self.channels[addr]).Check(health_pb2.HealthCheckRequest(), timeout=10)
        return r.status == health_pb2.HealthCheckResponse.SERVING

    def logs(self) -> str:
        return "\n".join(f"--- {c.name} ---\n{c.log_tail(40)}" for c in self.children)

    def stop(self) -> None:
        for ch in self.channels.values():
            ch.close()
        proc.stop_all(self.children)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    s = Servers(tmp_path_factory.mktemp("fuzzgrpc"))
    try:
        yield s
    finally:
        for c in s.children:
            assert c.alive(), f"{c.name} died during fuzzing:\n{s.logs()}"
        s.stop()


def _targets() -> list[tuple[str, Method]]:
    s, _ = v2()
    out = [("broker", m) for m in methods_of(broker_pb2, "Broker")]
    out += [("broker", m) for m in methods_of(broker_pop_pb2, "BrokerPop")]
    out += [("namesrv", m) for m in methods_of(namesrv_pb2, "NameServer")]
    out += [("controller", m) for m in methods_of(controller_pb2, "Controller")]
    out += [("proxy", m) for m in methods_of(s, "MessagingService")]
    return out


TARGETS = _targets()


@pytest.mark.parametrize(("server", "method"), TARGETS, ids=[f"{s}-{m.name}" for s, m in TARGETS])
def test_fuzz_rpc(servers, server, method):
    addr = {"broker": servers.broker, "namesrv": servers.ns, "controller": servers.ctl, "proxy": servers.proxy}[server]
    channel = servers.channels[addr]
    timeout = DEADLINE_S
    md = PROXY_MD if server == "proxy" else None

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(payloads=st.lists(request_bytes(method.request), min_size=1, max_size=3 if method.client_streaming else 1))
    def one(payloads):
        COUNTS[f"{server}.{method.name}"] += 1
        t0 = time.monotonic()
        a = call(channel, method, payloads, timeout, md)
        OUTCOMES[a.status.name] += 1
        took = time.monotonic() - t0
        where = f"{server} {method.name} answered {a.status.name} {a.error} {a.details[:300]!r} after {took:.1f}s"
        assert a.status != grpc.StatusCode.DEADLINE_EXCEEDED, "hang: " + where
        assert a.status not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), where
        if a.status not in (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED) and server != "proxy":
            assert a.error, "untyped error: " + where
        assert servers.healthy(addr), f"{server} stopped answering health after {where}"

    one()


def test_after_fuzzing_everything_stored_before_is_intact(servers):
    b = servers.b
    got = []
    for q in (0, 1):
        r = b.PullMessage(broker_pb2.PullRequest(group="fuzz-check", topic=KEPT, queue_id=q, queue_offset=0,
                                                 max_messages=100), timeout=10)
        got += [m.body for m in r.messages]
    assert sorted(got) == sorted(servers.kept)
    ctl = controller_pb2_grpc.ControllerStub(servers.channels[servers.ctl])
    view = ctl.GetReplicaInfo(controller_pb2.CtlGetReplicaInfoRequest(cluster="fzc", broker_set="fzs"), timeout=10)
    assert view.exists and view.master_id and len(view.replicas) == 1
    assert servers._routed()
    s, d = servers.v2s, servers.v2d
    path = f"/{s.DESCRIPTOR.services_by_name['MessagingService'].full_name}/ReceiveMessage"
    recv = servers.channels[servers.proxy].unary_stream(
        path, request_serializer=s.ReceiveMessageRequest.SerializeToString,
        response_deserializer=s.ReceiveMessageResponse.FromString)
    bodies: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(bodies) < len(servers.proxy_kept) and time.monotonic() < deadline:
        for q in range(4):
            req = s.ReceiveMessageRequest(group=d.Resource(name="fuzz-kept-g"), batch_size=32,
                                          message_queue=d.MessageQueue(topic=d.Resource(name=KEPT), id=q))
            req.invisible_duration.FromSeconds(300)
            for resp in recv(req, metadata=PROXY_MD, timeout=10):
                if resp.WhichOneof("content") == "message":
                    bodies.append(resp.message.body)
    assert sorted(bodies) == sorted(servers.proxy_kept)
    for c in servers.children:
        assert c.alive(), c.name
