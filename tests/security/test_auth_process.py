"""Request authentication and ACLs on real processes: a controller (users, policies, bootstrap
admin), a name server and a broker with `auth_enabled`; users and policies made with
`orbitmq admin user|acl`; OrbitMQ's own client signing with `credentials=`.

Shown: signed requests accepted; a forged signature, an unknown key, a missing header and a stale
date refused UNAUTHENTICATED (orbitmq-error UNAUTHENTICATED); ACL allow and deny (deny wins over a
prefix allow; nothing matching = deny) refused PERMISSION_DENIED (FORBIDDEN); a user created with
the admin CLI can send; consumers need sub on group and topic; admin RPCs need an admin user;
a call signed with the cluster secret (a node) passes; the secret-bearing snapshot is for nodes only.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from orbitmq.bench.auth_cluster import ADMIN, AuthCluster
from orbitmq.client import Admin, Credentials, Message, Producer, PullConsumer
from orbitmq.client import errors as cerr
from orbitmq.common import node_auth, proc, request_auth
from orbitmq.common.node_auth_grpc import signed_channel
from orbitmq.controller.client import ControllerClient, ControllerError
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

pytestmark = pytest.mark.process

ALICE = Credentials("alice", "alice-secret-123")
BOB = ("bob", "bob-secret-4567")


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    with AuthCluster(tmp_path_factory.mktemp("auth")).running() as c:
        out = c.admin_ok("user", "list", "--json")   # waits until the controller serves and made the admin
        assert '"root"' in out
        c.admin_ok("topic", "create", "orders", "--queues", "2")
        c.admin_ok("topic", "create", "orders-secret", "--queues", "1")
        c.admin_ok("topic", "create", "audit", "--queues", "1")
        c.admin_ok("user", "create", ALICE.access_key, "--secret", ALICE.secret)
        c.admin_ok("acl", "set", "alice", "--resource", "TOPIC:orders*", "--actions", "pub")
        c.admin_ok("acl", "set", "alice", "--resource", "TOPIC:orders-secret", "--actions", "all", "--decision", "deny")
        c.admin_ok("user", "create", BOB[0], "--secret", BOB[1])
        c.admin_ok("acl", "set", "bob", "--resource", "TOPIC:orders", "--actions", "sub")
        c.admin_ok("acl", "set", "bob", "--resource", "GROUP:billing", "--actions", "sub")
        # the broker's copy moves a whole version at a time: once bob's last entry works, all of the above do
        proc.wait_until(lambda: bob_pull(c, "billing") is None, 60, 0.3, "the broker knows every policy")
        yield c


def send(cl: AuthCluster, topic: str, creds, body: bytes = b"x") -> object:
    with Producer(cl.namesrv, credentials=creds, retries=0, send_timeout_s=10) as p:
        return p.send(Message(topic, body))


def eventually_sends(cl: AuthCluster, topic: str, creds, timeout: float = 30) -> None:
    """The broker's cache learns policy changes within auth_refresh_s; poll until a send passes."""
    def ok() -> bool:
        try:
            send(cl, topic, creds)
            return True
        except cerr.ForbiddenError:
            return False
    proc.wait_until(ok, timeout, 0.3, f"{creds} may send to {topic}")


def raw_send(cl: AuthCluster, metadata) -> grpc.RpcError | None:
    with grpc.insecure_channel(cl.broker) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        try:
            stub.SendMessage(broker_pb2.SendRequest(topic="orders", queue_id=-1,
                                                    messages=[common_pb2.Message(topic="orders", body=b"raw")]),
                             metadata=metadata, timeout=15)
        except grpc.RpcError as e:
            return e
    return None


def bob_pull(cl: AuthCluster, group: str) -> grpc.RpcError | None:
    with grpc.insecure_channel(cl.broker) as ch:
        try:
            broker_pb2_grpc.BrokerStub(ch).PullMessage(
                broker_pb2.PullRequest(group=group, topic="orders", queue_id=0, max_messages=1),
                metadata=request_auth.signing_metadata(BOB[0], BOB[1], time.time()), timeout=15)
        except grpc.RpcError as e:
            return e
    return None


def code(e: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    return e.code(), dict(e.trailing_metadata() or ()).get("orbitmq-error", "")


def test_signed_send_accepted_and_admin_user_may_do_everything(cl):
    eventually_sends(cl, "orders", ALICE)
    r = send(cl, "orders", ("root", ADMIN[1]))
    assert r.queue_offset >= 0
    with Admin(cl.namesrv, credentials=ADMIN) as a:
        assert a.broker_status(cl.broker)["broker_set"] == "broker-a"   # GetBrokerStatus: admin only


def test_refusals_unauthenticated(cl):
    now = time.time()
    good = request_auth.signing_metadata(ALICE.access_key, ALICE.secret, now)
    assert raw_send(cl, good) is None or code(raw_send(cl, good))[1] != "UNAUTHENTICATED"

    forged = request_auth.signing_metadata("alice", "not-alices-secret", now)
    unknown = request_auth.signing_metadata("mallory", "whatever-secret", now)
    stale = request_auth.signing_metadata("alice", ALICE.secret, now - 3600)    # skew limit 900 s
    future = request_auth.signing_metadata("alice", ALICE.secret, now + 3600)
    header_only = [good[1]]                                                     # no x-mq-date-time
    for name, md in [("forged", forged), ("unknown", unknown), ("stale", stale), ("future", future),
                     ("missing", None), ("no date", header_only)]:
        e = raw_send(cl, md)
        assert e is not None, name
        assert code(e) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"), (name, e.details())
        assert e.details(), name
    with pytest.raises(cerr.UnauthenticatedError):
        send(cl, "orders", None)
    with pytest.raises(cerr.UnauthenticatedError, match="does not match"):
        send(cl, "orders", (ALICE.access_key, "wrong-secret-99"))


def test_acl_allow_deny_and_default_deny(cl):
    eventually_sends(cl, "orders", ALICE)
    with pytest.raises(cerr.ForbiddenError, match="denied"):
        send(cl, "orders-secret", ALICE)       # deny wins over the TOPIC:orders* allow
    with pytest.raises(cerr.ForbiddenError, match="no policy allows"):
        send(cl, "audit", ALICE)               # nothing matches: default deny
    e = raw_send(cl, request_auth.signing_metadata(BOB[0], BOB[1], time.time()))   # bob: sub only
    assert code(e) == (grpc.StatusCode.PERMISSION_DENIED, "FORBIDDEN")
    with Admin(cl.namesrv, credentials=ALICE) as a, pytest.raises(cerr.ForbiddenError):
        a.create_topic("orders-new", queues=1)     # no create right
    with Admin(cl.namesrv, credentials=ALICE) as a, pytest.raises(cerr.ForbiddenError):
        a.broker_status(cl.broker)                 # admin users only


def test_consumer_needs_sub_on_group_and_topic(cl):
    eventually_sends(cl, "orders", ALICE)
    got: list[bytes] = []
    c = PullConsumer("billing", cl.namesrv, credentials=BOB)
    c.subscribe("orders")
    c.start()
    try:
        proc.wait_until(lambda: got.extend(m.body for m in c.poll(1.0)) or bool(got), 60, 0.1, "bob pulls orders")
    finally:
        c.close()
    e = bob_pull(cl, "other-group")                       # sub on the topic but not on this group
    assert e is not None and code(e) == (grpc.StatusCode.PERMISSION_DENIED, "FORBIDDEN")


def test_admin_cli_user_can_send_then_delete_revokes(cl):
    cl.admin_ok("user", "create", "carol", "--secret", "carol-secret-1")
    cl.admin_ok("acl", "set", "carol", "--resource", "TOPIC:audit", "--actions", "pub,sub")
    eventually_sends(cl, "audit", ("carol", "carol-secret-1"))
    out = cl.admin_ok("acl", "list", "carol", "--json")
    assert "TOPIC:audit" in out and "allow" in out
    cl.admin_ok("user", "delete", "carol")

    def refused() -> bool:
        try:
            send(cl, "audit", ("carol", "carol-secret-1"))
            return False
        except cerr.UnauthenticatedError:
            return True
    proc.wait_until(refused, 30, 0.3, "deleted user refused")


def test_admin_cli_refused_without_admin_rights(cl):
    r = cl.admin("user", "list", as_admin=False)          # neither admin user nor cluster secret
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr, r.stderr

    async def as_alice() -> str:
        c = ControllerClient([cl.controller], credentials=ALICE)
        try:
            await c.auth_upsert_user("eve", "eve-secret-1234", True)
            return ""
        except ControllerError as e:
            return e.code
        finally:
            await c.close()
    assert asyncio.run(as_alice()) == "FORBIDDEN"


def test_node_signature_passes_and_snapshot_is_for_nodes_only(cl):
    secret = node_auth.load_secret(cl.secret)
    with signed_channel(grpc.insecure_channel(cl.broker), secret) as ch:
        s = broker_pb2_grpc.BrokerStub(ch).GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=15)
        assert s.broker_set
    with signed_channel(grpc.insecure_channel(cl.broker), b"x" * 32) as ch, pytest.raises(grpc.RpcError) as e:
        broker_pb2_grpc.BrokerStub(ch).GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=15)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    async def snapshot(**kw) -> object:
        c = ControllerClient([cl.controller], **kw)
        try:
            return await c.auth_snapshot()
        except ControllerError as err:
            return err.code
        finally:
            await c.close()
    assert asyncio.run(snapshot(credentials=ADMIN)) == "UNAUTHENTICATED"     # even the admin user
    snap = asyncio.run(snapshot(secret=secret))
    assert {u.access_key for u in snap.users} >= {"root", "alice", "bob"}
