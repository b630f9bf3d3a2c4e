"""A name server trusts only brokers that sign with the cluster secret, and only masters the
controllers vouch for: the forged RegisterBroker of issue 12 (master of a real set at epoch 2^62,
a dead address, a long expiry) no longer redirects producers."""

from __future__ import annotations

import grpc
import pytest

from orbitmq.common import node_auth
from orbitmq.common.local_cluster import ClusterSpec, LocalCluster
from orbitmq.common.node_auth_grpc import signing_interceptors
from orbitmq.common.proc import wait_until
from orbitmq.namesrv.routes import Registration, RouteTable
from orbitmq.protos import namesrv_pb2, namesrv_pb2_grpc

SECRET = b"s" * 32
M = "/orbitmq.v1.NameServer/RegisterBroker"


def test_signature_checks_secret_method_payload_and_time():
    h = node_auth.sign(SECRET, M, b"req", 1_000_000)
    node_auth.verify(SECRET, M, b"req", h, 1_000_000 + 59_000)
    bad = [
        (b"x" * 32, M, b"req", h, 1_000_000, "bad signature"),
        (SECRET, "/orbitmq.v1.NameServer/UnregisterBroker", b"req", h, 1_000_000, "bad signature"),
        (SECRET, M, b"req2", h, 1_000_000, "bad signature"),
        (SECRET, M, b"req", h, 1_000_000 + 61_000, "away from this node's clock"),
        (SECRET, M, b"req", None, 1_000_000, "missing"),
        (SECRET, M, b"req", "v1:abc:00", 1_000_000, "malformed"),
        (SECRET, M, b"req", "v0:" + h[3:], 1_000_000, "malformed"),
    ]
    for secret, method, payload, header, now, words in bad:
        with pytest.raises(node_auth.NodeAuthError, match=words):
            node_auth.verify(secret, method, payload, header, now)


def test_secret_file_errors_name_the_file(tmp_path):
    f = tmp_path / "cluster.secret"
    with pytest.raises(ValueError, match=f"{f}: cannot read"):
        node_auth.load_secret(str(f))
    f.write_text("short\n")
    with pytest.raises(ValueError, match=f"{f}: the secret must be at least 16"):
        node_auth.load_secret(str(f))


def test_a_broker_cannot_choose_an_expiry_longer_than_the_name_servers():
    t = RouteTable(default_expire_s=120.0)
    reg = Registration(cluster="c", broker_set="s", broker_id=1, address="a:1", instance_id="i", ha_address="",
                       is_master=True, epoch=1, topics=(), auto_create_topics=False, default_queues=4,
                       expire_after_s=10 ** 9, writable=True)
    t.register(reg, now=0.0)
    assert t.alive(119.0) and not t.alive(121.0)


def _forged(cluster: LocalCluster, bset: str) -> namesrv_pb2.RegisterBrokerRequest:
    return namesrv_pb2.RegisterBrokerRequest(
        broker=namesrv_pb2.BrokerIdentity(cluster=cluster.spec.name, broker_set=bset, broker_id=2,
                                          address="127.0.0.1:1", instance_id="evil"),
        is_master=True, epoch=2 ** 62, expire_after_ms=10 ** 12, writable=True)


def _code(e: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    return e.code(), dict(e.trailing_metadata() or ()).get("orbitmq-error", "")


@pytest.mark.process
def test_forged_master_registration_is_refused(tmp_path):
    cluster = LocalCluster(ClusterSpec(dir=str(tmp_path / "c"), controllers=1, namesrvs=1, replicas=1, learners=0))
    cluster.start()
    try:
        masters = cluster.wait_ready()
        real = cluster.brokers[masters["broker-a"]].addr
        ns = cluster.namesrv_addrs[0]

        def master_in_routes() -> str:
            info = namesrv_pb2_grpc.NameServerStub(grpc.insecure_channel(ns)).GetClusterInfo(
                namesrv_pb2.GetClusterInfoRequest(), timeout=5)
            sets = info.clusters[cluster.spec.name].broker_sets
            return next((s.master_address for s in sets if s.broker_set == "broker-a"), "")

        wait_until(lambda: master_in_routes() == real, 60, what="real master in the routes")
        plain = namesrv_pb2_grpc.NameServerStub(grpc.insecure_channel(ns))
        with pytest.raises(grpc.RpcError) as e:
            plain.RegisterBroker(_forged(cluster, "broker-a"), timeout=5)
        assert _code(e.value) == (grpc.StatusCode.UNAUTHENTICATED, "NO_PERMISSION")
        with pytest.raises(grpc.RpcError) as e:   # the keep-alive stream too
            next(iter(plain.KeepAlive(iter([namesrv_pb2.KeepAlivePing()]), timeout=5)))
        assert _code(e.value) == (grpc.StatusCode.UNAUTHENTICATED, "NO_PERMISSION")

        # even signed with the real secret, a master claim the controllers do not vouch for is refused
        secret = node_auth.load_secret(str(cluster.root / "cluster.secret"))

        async def signed_forgery() -> tuple[grpc.StatusCode, str]:
            async with grpc.aio.insecure_channel(ns, interceptors=signing_interceptors(secret)) as ch:
                try:
                    await namesrv_pb2_grpc.NameServerStub(ch).RegisterBroker(_forged(cluster, "broker-a"), timeout=10)
                except grpc.aio.AioRpcError as err:
                    return _code(err)
            return grpc.StatusCode.OK, ""

        import asyncio

        assert asyncio.run(signed_forgery()) == (grpc.StatusCode.FAILED_PRECONDITION, "STALE_EPOCH")
        assert master_in_routes() == real   # producers are still routed to the elected master
    finally:
        cluster.stop()
