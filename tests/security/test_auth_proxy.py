"""The official RocketMQ 5 Python client's `Credentials(access_key, secret)` against `orbitmq proxy`
with `auth_enabled` (cluster mode, over a broker that also has `auth_enabled`: the proxy forwards
as a node, signed with the cluster secret), unchanged.

Shown: a user with pub/sub rights sends, receives and acks; a wrong secret and an unknown key are
refused with UNAUTHORIZED (40100, UnauthorizedException); a topic the user has no right on is
refused with UNAUTHORIZED too (as RocketMQ answers; message "forbidden: ..."); a client with empty
credentials is refused.
This module imports the official client, never OrbitMQ's own apache.rocketmq.v2 code.
"""

from __future__ import annotations

import time

import pytest

from orbitmq.bench.auth_cluster import AuthCluster
from orbitmq.common import proc

pytestmark = pytest.mark.process

rocketmq = pytest.importorskip("rocketmq", reason="rocketmq-python-client is in the [test] extras")

DAVE = ("dave", "dave-secret-789")


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    with AuthCluster(tmp_path_factory.mktemp("authproxy"), proxy=True).running() as c:
        c.admin_ok("user", "list")
        c.admin_ok("topic", "create", "orders", "--queues", "2")
        c.admin_ok("topic", "create", "audit", "--queues", "1")
        c.admin_ok("group", "create", "g-auth")
        c.admin_ok("user", "create", DAVE[0], "--secret", DAVE[1])
        c.admin_ok("acl", "set", "dave", "--resource", "TOPIC:orders", "--actions", "pub,sub")
        c.admin_ok("acl", "set", "dave", "--resource", "GROUP:g-auth", "--actions", "sub")
        from rocketmq.grpc_protocol import Code, QueryAssignmentRequest, Resource

        # wait until the proxy has dave's whole policy (it refreshes every second): the group entry was set last
        assignment = QueryAssignmentRequest(topic=Resource(name="orders"), group=Resource(name="g-auth"))
        proc.wait_until(lambda: official_call(c, *DAVE, "QueryAssignment", assignment).status.code
                        not in (Code.UNAUTHORIZED, Code.FORBIDDEN), 60, 0.3, "the proxy knows dave's policy")
        yield c


@pytest.fixture
def clients():
    started = []

    def start(client):
        client.startup()
        started.append(client)
        return client

    yield start
    for c in reversed(started):
        try:
            c.shutdown()
        except Exception:  # noqa: BLE001 - teardown of an already failed client
            pass


def config(cl: AuthCluster, ak: str, sk: str):
    return rocketmq.ClientConfiguration(cl.proxy, rocketmq.Credentials(ak, sk), request_timeout=10)


def message(topic: str, body: bytes):
    m = rocketmq.Message()
    m.topic = topic
    m.body = body
    return m


def failure(fn) -> Exception:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the official client's exception classes
        return e
    raise AssertionError("the call was not refused")


def test_official_client_with_credentials_sends_receives_acks(cl, clients):
    p = clients(rocketmq.Producer(config(cl, *DAVE), ("orders",)))

    def sent() -> bool:
        try:
            p.send(message("orders", b"signed-hello"))
            return True
        except Exception:  # noqa: BLE001 - the official client wraps a refused route query in Exception
            return False
    proc.wait_until(sent, 30, 0.3, "dave sends through the proxy")
    c = clients(rocketmq.SimpleConsumer(config(cl, *DAVE), "g-auth", {"orders": rocketmq.FilterExpression()}, 5))
    got = []
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:
        for m in c.receive(16, 30):
            got.append(m.body)
            c.ack(m)
    assert b"signed-hello" in got


def official_call(cl: AuthCluster, ak: str, sk: str, method: str, request) -> object:
    """One call on the official client's own stubs, with the metadata its `Signature` builds."""
    import grpc
    from rocketmq.grpc_protocol import MessagingServiceStub
    from rocketmq.v5.util.signature import Signature

    md = Signature.metadata(config(cl, ak, sk), "authtest@1@0@x")
    with grpc.insecure_channel(cl.proxy) as ch:
        return getattr(MessagingServiceStub(ch), method)(request, metadata=md, timeout=15)


def query_route(topic: str):
    from rocketmq.grpc_protocol import QueryRouteRequest, Resource

    return QueryRouteRequest(topic=Resource(name=topic))


@pytest.mark.parametrize("ak, sk", [("dave", "not-daves-secret"), ("nobody", "nobody-secret-1"), ("", "")])
def test_wrong_secret_unknown_key_and_no_credentials_unauthorized(cl, ak, sk, caplog):
    from rocketmq.grpc_protocol import Code

    r = official_call(cl, ak, sk, "QueryRoute", query_route("orders"))
    assert r.status.code == Code.UNAUTHORIZED, r.status
    assert "authentication failed" in r.status.message
    p = rocketmq.Producer(config(cl, ak, sk), ("orders",))
    try:
        p.startup()
    except Exception:  # noqa: BLE001 - startup may already fail on its route query
        pass
    try:
        failure(lambda: p.send(message("orders", b"x")))      # the client wraps the refused route query
    finally:
        try:
            p.shutdown()
        except Exception:  # noqa: BLE001
            pass
    assert "40100" in caplog.text


def test_no_right_on_topic_forbidden(cl, clients):
    from rocketmq.grpc_protocol import Code

    proc.wait_until(lambda: official_call(cl, *DAVE, "QueryRoute", query_route("orders")).status.code == Code.OK,
                    30, 0.3, "dave may route orders")
    r = official_call(cl, *DAVE, "QueryRoute", query_route("audit"))
    assert r.status.code == Code.UNAUTHORIZED and r.status.message.startswith("forbidden: "), r.status
    assert "no policy allows" in r.status.message, r.status
    p = clients(rocketmq.Producer(config(cl, *DAVE), ("orders",)))
    failure(lambda: p.send(message("audit", b"x")))


def test_orbitmq_client_proxy_mode_with_credentials(cl):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("proxy_mode_auth_scenario.py")
    r = subprocess.run([sys.executable, str(script), cl.proxy, *DAVE, "orders"], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out.get("offset", -1) >= 0, out
    assert out["wrong_secret"] == "UnauthenticatedError", out
