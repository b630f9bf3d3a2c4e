"""What each RPC needs (broker/auth_checks.py, proxy/auth_checks.py; pure), and the decision on
those needs for typical users. The proxy side is fed plain stand-in requests (this process also
runs the official client, whose apache.rocketmq.v2 protobuf names clash with OrbitMQ's copy)."""

from __future__ import annotations

from types import SimpleNamespace as NS

from orbitmq.broker.auth_checks import need_of as broker_need
from orbitmq.common import acl
from orbitmq.common.acl import Action as A
from orbitmq.common.acl import Check
from orbitmq.common.acl import ResourceType as R
from orbitmq.protos import broker_pb2, common_pb2
from orbitmq.proxy.auth_checks import need_of as proxy_need

B = "/orbitmq.v1.Broker/"
P = "/apache.rocketmq.v2.MessagingService/"


def test_broker_needs():
    assert broker_need(B + "SendMessage", broker_pb2.SendRequest(topic="t")).checks == (Check(R.TOPIC, "t", A.PUB),)
    pull = broker_need(B + "PullMessage", broker_pb2.PullRequest(group="g", topic="t"))
    assert set(pull.checks) == {Check(R.GROUP, "g", A.SUB), Check(R.TOPIC, "t", A.SUB)}
    hb = broker_need(B + "ConsumerHeartbeat", broker_pb2.ConsumerHeartbeatRequest(
        group="g", subscriptions=[broker_pb2.Subscription(topic="a"), broker_pb2.Subscription(topic="b")]))
    assert set(hb.checks) == {Check(R.GROUP, "g", A.SUB), Check(R.TOPIC, "a", A.SUB), Check(R.TOPIC, "b", A.SUB)}
    ct = broker_need(B + "CreateTopic", broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(topic="n")))
    assert ct.checks == (Check(R.TOPIC, "n", A.CREATE),)
    assert broker_need(B + "DeleteTopic", broker_pb2.DeleteTopicRequest(topic="n")).checks == \
        (Check(R.TOPIC, "n", A.ADMIN),)
    for admin_only in ("GetBrokerStatus", "ListTopics", "QueryMessageById"):
        assert broker_need(B + admin_only, object()).admin_only
    assert broker_need("/orbitmq.v1.BrokerPop/Pop", object()).node_only
    assert broker_need("/grpc.health.v1.Health/Check", object()) is None
    assert broker_need(B + "SendMessage", None) is not None     # protected, whatever the request


def res(name: str, ns: str = "") -> NS:
    return NS(name=name, resource_namespace=ns)


def test_proxy_needs_with_namespaces():
    md = {"x-mq-namespace": "prod"}
    send = proxy_need(P + "SendMessage", NS(messages=[NS(topic=res("a")), NS(topic=res("b", "qa"))]), md)
    assert send.checks == (Check(R.TOPIC, "prod%a", A.PUB), Check(R.TOPIC, "qa%b", A.PUB))
    recv = proxy_need(P + "ReceiveMessage", NS(group=res("g"), message_queue=NS(topic=res("t"))), {})
    assert set(recv.checks) == {Check(R.GROUP, "g", A.SUB), Check(R.TOPIC, "t", A.SUB)}
    route = proxy_need(P + "QueryRoute", NS(topic=res("t")), {})
    assert route.checks == () and set(route.any_checks) == {Check(R.TOPIC, "t", A.PUB), Check(R.TOPIC, "t", A.SUB)}
    producer_hb = NS(HasField=lambda f: False, group=res(""))
    assert proxy_need(P + "Heartbeat", producer_hb, {}).checks == ()
    consumer_hb = NS(HasField=lambda f: True, group=res("g"))
    assert proxy_need(P + "Heartbeat", consumer_hb, {}).checks == (Check(R.GROUP, "g", A.SUB),)
    assert proxy_need(P + "Telemetry", None, {}) is not None       # a stream: signature only
    assert proxy_need("/grpc.health.v1.Health/Check", None, {}) is None


def test_typical_users():
    snap = acl.Snapshot(
        {"app": acl.User("app", "secret-123"), "ops": acl.User("ops", "secret-456", admin=True)},
        {"app": (acl.Entry(acl.Resource.parse("TOPIC:orders"), acl.parse_actions("pub,sub"), acl.Decision.ALLOW),
                 acl.Entry(acl.Resource.parse("GROUP:billing"), acl.parse_actions("sub"), acl.Decision.ALLOW))})
    pull = broker_need(B + "PullMessage", broker_pb2.PullRequest(group="billing", topic="orders"))
    assert acl.decide(snap, "app", pull.checks).allowed
    retry_send = broker_need(B + "SendMessage", broker_pb2.SendRequest(topic="%RETRY%billing"))
    assert acl.decide(snap, "app", retry_send.checks).allowed       # a consumer's send-back to its retry topic
    other = broker_need(B + "PullMessage", broker_pb2.PullRequest(group="other", topic="orders"))
    assert not acl.decide(snap, "app", other.checks).allowed
    status = broker_need(B + "GetBrokerStatus", broker_pb2.GetBrokerStatusRequest())
    assert not acl.decide(snap, "app", status.checks, status.admin_only).allowed
    assert acl.decide(snap, "ops", status.checks, status.admin_only).allowed
