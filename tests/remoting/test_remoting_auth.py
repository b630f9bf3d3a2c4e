"""The framed port's HELLO sign-in on a real RemotingServer (loopback, in-process): a HELLO naming
an access key the broker's users cache does not know yet is decided after one refresh of the cache,
and what the client pipelined behind it in the same write is served only once it is accepted (or
never, after a refusal, and the connection is closed). The users cache here is an in-memory stand-in
for the controller-fed AuthCache (its `snapshot` and `refresh_unknown`); the ACL decision, the
signature check and the connection are the real ones. The whole chain on real processes:
tests/security/test_auth_framed.py.
"""

from __future__ import annotations

import asyncio
import time

from orbitmq.broker.auth import BrokerRefuser
from orbitmq.broker.auth_checks import need_of
from orbitmq.broker.remoting import RemotingServer
from orbitmq.broker.remoting_auth import FramedAuth
from orbitmq.common import acl, framed_auth
from orbitmq.common.credentials import Credentials
from orbitmq.common.framing_conn import ClientSide, Failed, HelloReply, Reply
from orbitmq.common.framing_methods import BY_NAME
from orbitmq.common.request_auth_server import RequestAuthInterceptor
from orbitmq.protos import broker_pb2

DORA = Credentials("dora", "dora-secret-123")


class UsersStandIn:
    """`snapshot` and `refresh_unknown` of controller/auth_cache.AuthCache; `later` joins at refresh."""

    def __init__(self, later: dict[str, acl.User]) -> None:
        self.snapshot = acl.Snapshot({})
        self.later = later
        self.refreshes = 0

    async def refresh_unknown(self, access_key: str) -> bool:
        self.refreshes += 1
        await asyncio.sleep(0.05)     # the controllers' answer takes a while: the connection must wait
        self.snapshot = acl.Snapshot(dict(self.later), {}, 2)
        return access_key in self.snapshot.users


class Service:
    def __init__(self) -> None:
        self.calls = 0

    async def GetBrokerStatus(self, request, context):  # noqa: N802 - the RPC's name
        self.calls += 1
        return broker_pb2.BrokerStatus(broker_set="bs-test")


async def sign_in_and_ask(later: dict[str, acl.User]) -> tuple[list, Service, UsersStandIn, bool]:
    cache = UsersStandIn(later)
    interceptor = RequestAuthInterceptor(cache, need_of, BrokerRefuser(), b"s" * 32, 900.0, "broker")
    service = Service()
    server = RemotingServer(service, auth=FramedAuth(interceptor))
    port = await server.start("127.0.0.1:0")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        side = ClientSide()
        hello = side.hello(**framed_auth.user_fields(DORA, time.time()))
        _rid, req = side.request(BY_NAME["GetBrokerStatus"].code, broker_pb2.GetBrokerStatusRequest().SerializeToString())
        writer.write(hello + req)       # the request pipelined behind the HELLO, in one write
        events: list = []
        closed = False
        async with asyncio.timeout(10):
            while len(events) < 2:
                data = await reader.read(65536)
                if not data:
                    closed = True
                    break
                events += side.receive(data)
        writer.close()
        return events, service, cache, closed
    finally:
        await server.stop()


def test_unknown_key_is_decided_after_one_refresh_and_the_pipelined_request_then_served() -> None:
    events, service, cache, _ = asyncio.run(sign_in_and_ask({"dora": acl.User("dora", DORA.secret, admin=True)}))
    assert cache.refreshes == 1
    assert type(events[0]) is HelloReply
    assert type(events[1]) is Reply and broker_pb2.BrokerStatus.FromString(events[1].payload).broker_set == "bs-test"
    assert service.calls == 1


def test_still_unknown_after_the_refresh_is_refused_and_nothing_behind_it_runs() -> None:
    events, service, cache, closed = asyncio.run(sign_in_and_ask({}))
    assert cache.refreshes == 1
    assert len(events) == 1 and type(events[0]) is Failed
    assert events[0].error.code == "UNAUTHENTICATED" and "unknown access key" in events[0].error.details
    assert closed and service.calls == 0


def test_known_user_without_the_right_is_refused_per_request() -> None:
    events, service, _, closed = asyncio.run(sign_in_and_ask({"dora": acl.User("dora", DORA.secret)}))
    assert type(events[0]) is HelloReply                      # signed in
    assert type(events[1]) is Failed and events[1].error.code == "FORBIDDEN"   # GetBrokerStatus: admins only
    assert service.calls == 0 and not closed


def test_nonce_window_accepts_each_nonce_once_within_the_window() -> None:
    w = framed_auth.NonceWindow(window_ms=1000, max_size=3)
    assert w.fresh(b"a" * 16, 0) and not w.fresh(b"a" * 16, 500)
    assert w.fresh(b"a" * 16, 1501)                 # forgotten after the window (its date is stale by then)
    assert w.fresh(b"b" * 16, 1502) and w.fresh(b"c" * 16, 1503)
    assert not w.fresh(b"d" * 16, 1504)             # full: refused rather than forgetting a fresh one
