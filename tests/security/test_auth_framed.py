"""Authentication and ACLs on the broker's framed port (`auth_enabled` with `remoting_listen`), on
real processes (bench/auth_cluster.py with `framed`): a controller holding users and policies, a
name server, a broker serving gRPC and the framed protocol.

Shown: a client with credentials sends, pulls and reads broker status over the framed port (the
broker's framed call counter moves), as the signed user of its HELLO; the user's ACL is checked
per request (FORBIDDEN, as over gRPC); an unsigned, wrongly signed or unknown-key HELLO is refused
UNAUTHENTICATED and nothing on that connection is served; a user created after the broker started
signs in at once (one refresh of the users); a user deleted while connected is refused from then
on; a node HELLO with the cluster secret is served, and the same HELLO replayed, or one signed with
another secret, is refused.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from orbitmq.bench.auth_cluster import ADMIN, AuthCluster
from orbitmq.client import Admin, Credentials, Message, Producer, PullConsumer
from orbitmq.client import errors as cerr
from orbitmq.client.remoting import RemotingClient, RemotingRpcError
from orbitmq.client.transport import Transport
from orbitmq.common import framed_auth, node_auth, proc
from orbitmq.protos import broker_pb2, common_pb2

pytestmark = pytest.mark.process

ALICE = Credentials("alice", "alice-secret-123")
BOB = Credentials("bob", "bob-secret-4567")


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    with AuthCluster(tmp_path_factory.mktemp("auth-framed"), framed=True).running() as c:
        assert '"root"' in c.admin_ok("user", "list", "--json")
        c.admin_ok("topic", "create", "orders", "--queues", "1")
        c.admin_ok("topic", "create", "audit", "--queues", "1")
        c.admin_ok("user", "create", ALICE.access_key, "--secret", ALICE.secret)
        c.admin_ok("acl", "set", "alice", "--resource", "TOPIC:orders", "--actions", "pub")
        c.admin_ok("user", "create", BOB.access_key, "--secret", BOB.secret)
        c.admin_ok("acl", "set", "bob", "--resource", "TOPIC:orders", "--actions", "sub")
        c.admin_ok("acl", "set", "bob", "--resource", "GROUP:billing", "--actions", "sub")
        yield c


def framed_addr(cl: AuthCluster) -> str:
    t = Transport(cl.namesrv, credentials=ADMIN)
    try:
        addr = proc.wait_until(lambda: t.route("orders", refresh=True).remoting.get(cl.broker), 60, 0.3,
                               "the route announces the broker's framed port")
        return str(addr)
    finally:
        t.close()


def framed_calls(cl: AuthCluster) -> int:
    with Admin(cl.namesrv, credentials=ADMIN) as a:     # has routed nothing: asks over gRPC
        return int(a.broker_status(cl.broker)["stats"].get("framed_calls", 0))


def send_req(topic: str = "orders") -> broker_pb2.SendRequest:
    return broker_pb2.SendRequest(topic=topic, queue_id=0, messages=[common_pb2.Message(topic=topic, body=b"raw")])


def test_signed_client_is_served_over_the_framed_port_as_its_user(cl):
    before = framed_calls(cl)
    # the broker's users cache learns alice's policy within auth_refresh_s
    with Producer(cl.namesrv, credentials=ALICE, retries=0, send_timeout_s=10) as p:
        def sent() -> bool:
            try:
                p.send(Message("orders", b"over-framed"))
                return True
            except cerr.ForbiddenError:
                return False
        proc.wait_until(sent, 30, 0.3, "alice may send to orders")
        r = p.send_batch([Message("orders", f"b{i}".encode()) for i in range(5)])
        assert len(r) == 5
        with pytest.raises(cerr.ForbiddenError, match="not authorised"):
            p.send(Message("audit", b"no pub on audit"))
    for creds in (ADMIN, ALICE):     # an admin RPC over the framed port (once routed): admin users only
        with Admin(cl.namesrv, credentials=creds) as a:
            a.transport.route("orders")
            assert a.transport.remoting(cl.broker) is not None
            if creds is ADMIN:
                assert a.broker_status(cl.broker)["broker_set"]
            else:
                with pytest.raises(cerr.ForbiddenError):
                    a.broker_status(cl.broker)
    got: list = []
    c = PullConsumer("billing", cl.namesrv, credentials=BOB)
    try:
        c.subscribe("orders")
        deadline = time.monotonic() + 30
        while len(got) < 6 and time.monotonic() < deadline:
            got += c.poll(1.0)
    finally:
        c.close()
    assert {m.body for m in got} >= {b"over-framed", b"b0", b"b4"}
    assert framed_calls(cl) >= before + 4      # the sends, the pulls and the status went framed


def test_unsigned_and_badly_signed_hellos_are_refused_before_anything_is_served(cl):
    addr = framed_addr(cl)
    cases = {
        "unsigned": ({}, "needs a signed HELLO"),
        "wrong secret": (framed_auth.user_fields(Credentials("alice", "not-her-secret"), time.time()), "does not match"),
        "unknown key": (framed_auth.user_fields(Credentials("nobody", "secret-of-nobody"), time.time()),
                        "unknown access key"),
        "stale date": (framed_auth.user_fields(ALICE, time.time() - 7200), "away from the server clock"),
    }
    for name, (fields, words) in cases.items():
        cli = RemotingClient(addr, hello=fields)
        try:
            with pytest.raises(RemotingRpcError) as e:
                cli.call("SendMessage", send_req(), 10)
            assert dict(e.value.trailing_metadata())["orbitmq-error"] == "UNAUTHENTICATED", name
            assert words in e.value.details(), (name, e.value.details())
        finally:
            cli.close()


def test_a_new_user_signs_in_at_once_and_a_deleted_one_is_refused_while_connected(cl):
    addr = framed_addr(cl)
    carol = Credentials("carol", "carol-secret-890")
    cl.admin_ok("user", "create", carol.access_key, "--secret", carol.secret)
    cl.admin_ok("acl", "set", "carol", "--resource", "TOPIC:orders", "--actions", "pub")
    cli = RemotingClient(addr, hello=lambda: framed_auth.user_fields(carol, time.time()))
    try:
        def carol_sends() -> bool:
            try:
                cli.call("SendMessage", send_req(), 10)
                return True
            except RemotingRpcError as e:
                assert dict(e.trailing_metadata())["orbitmq-error"] == "FORBIDDEN", e.details()
                return False      # her policy not in the broker's copy yet; she was authenticated
        proc.wait_until(carol_sends, 30, 0.3, "carol may send over the framed port")
        cl.admin_ok("user", "delete", carol.access_key)

        def refused() -> bool:
            try:
                cli.call("SendMessage", send_req(), 10)
                return False
            except RemotingRpcError as e:
                return dict(e.trailing_metadata())["orbitmq-error"] == "UNAUTHENTICATED" and \
                    "deleted or its secret changed" in e.details()
        proc.wait_until(refused, 30, 0.3, "the deleted user's open connection is refused")
    finally:
        cli.close()


def test_node_hello_needs_the_cluster_secret_and_cannot_be_replayed(cl):
    addr = framed_addr(cl)
    secret = node_auth.load_secret(cl.secret)
    fields = framed_auth.node_fields(secret, int(time.time() * 1000), os.urandom(framed_auth.NONCE_BYTES))
    node = RemotingClient(addr, hello=fields)
    try:
        st = node.call("GetBrokerStatus", broker_pb2.GetBrokerStatusRequest(), 10)   # admin only for users
        assert st.broker_set
    finally:
        node.close()
    for hello, words in ((fields, "already used"),
                         (framed_auth.node_fields(b"another-secret-0123", int(time.time() * 1000),
                                                  os.urandom(framed_auth.NONCE_BYTES)), "bad signature")):
        again = RemotingClient(addr, hello=hello)
        try:
            with pytest.raises(RemotingRpcError) as e:
                again.call("GetBrokerStatus", broker_pb2.GetBrokerStatusRequest(), 10)
            assert words in e.value.details()
        finally:
            again.close()


def test_the_proxys_framed_connections_sign_in_as_a_node(cl):
    from orbitmq.proxy.framed_client import FramedBrokers, FramedCallError

    addr = framed_addr(cl)

    async def status(secret: bytes | None) -> str:
        fb = FramedBrokers(cluster_secret=secret)
        try:
            st = await fb.call(addr, "GetBrokerStatus", broker_pb2.GetBrokerStatusRequest(), 10)
            return st.broker_set
        except FramedCallError as e:
            return f"{e.info.code}: {e.info.details}"
        finally:
            await fb.close()
    with Admin(cl.namesrv, credentials=ADMIN) as a:
        name = a.broker_status(cl.broker)["broker_set"]
    assert asyncio.run(status(node_auth.load_secret(cl.secret))) == name   # GetBrokerStatus: no user may, a node may
    refused = asyncio.run(status(None))
    assert refused.startswith("UNAVAILABLE") and "needs a signed HELLO" in refused, refused
