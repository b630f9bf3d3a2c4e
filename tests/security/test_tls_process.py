"""TLS on real processes: a controller (requiring client certificates), a name server and a broker
set of two replicas, all serving TLS with certificates from a throwaway CA; replication between
the replicas over TLS with followers' certificates required. Then what an attacker or a
misconfigured client sees: plaintext refused, a wrong CA refused, no certificate refused."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import grpc
import pytest

from orbitmq.client import Admin, Message, Producer, PullConsumer, TlsConfig
from orbitmq.client import errors as cerr
from orbitmq.common import net, proc, tls_certs
from orbitmq.common.tls_grpc import channel as tls_channel
from orbitmq.protos import broker_pb2, broker_pb2_grpc

pytestmark = pytest.mark.process

TOPIC = "tls-orders"


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[proc.Child] = []
        ports = net.free_ports(7)
        self.ctl, self.raft, self.ns = (f"127.0.0.1:{p}" for p in ports[:3])
        self.brokers = [(f"127.0.0.1:{ports[3 + 2 * i]}", f"127.0.0.1:{ports[4 + 2 * i]}") for i in range(2)]
        names = {"c1": [], "n1": [], "b1": [], "b2": [], "client": [], "proxy": []}
        self.certs = tls_certs.write_cluster_certs(root / "tls", names)
        self.ca = str(root / "tls" / "ca.pem")
        other = tls_certs.write_cluster_certs(root / "other-ca", {"stranger": []})
        self.other_ca = str(root / "other-ca" / "ca.pem")
        self.stranger = other["stranger"]

    def tls_args(self, name: str) -> list[str]:
        cert, key = self.certs[name]
        return ["--set", f"tls_cert_file={cert}", "--set", f"tls_key_file={key}", "--set", f"tls_ca_file={self.ca}"]

    def start(self, name: str, args: list[str]) -> proc.Child:
        c = proc.start(name, proc.orbitmq_argv(*args), log_path=self.root / f"{name}.log")
        self.children.append(c)
        return c

    @property
    def client_tls(self) -> TlsConfig:
        cert, key = self.certs["client"]
        return TlsConfig(ca_file=self.ca, cert_file=cert, key_file=key)

    def logs(self) -> str:
        return "\n".join(f"--- {c.name} ---\n{c.log_tail(30)}" for c in self.children)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("tls"))
    try:
        c.start("c1", ["controller", "--node-id", "c1", "--listen", c.ctl, "--raft-addr", c.raft,
                       "--data-dir", str(c.root / "c1"), *c.tls_args("c1"), "--set", "tls_client_auth=true"])
        c.start("n1", ["namesrv", "--listen", c.ns, *c.tls_args("n1"), "--set", f"controllers={c.ctl}"])
        for i, (addr, ha) in enumerate(c.brokers, 1):
            c.start(f"b{i}", ["broker", "--listen", addr, "--namesrv", c.ns, "--store-dir", str(c.root / f"b{i}"),
                              "--broker-set", "tls-a", "--broker-id", str(i), *c.tls_args(f"b{i}"),
                              "--set", "ha_mode=controller", "--set", f"ha_listen={ha}", "--set", f"ha_address={ha}",
                              "--set", f"controllers={c.ctl}", "--set", "ha_tls_client_auth=true",
                              "--set", "register_interval_s=2"])
        for addr in [c.ctl, c.ns, *(a for a, _ in c.brokers)]:
            net.wait_for_port(addr, 60)
        with Admin(c.ns, tls=c.ca) as admin:
            def ready() -> bool:
                try:
                    rows = admin.cluster_list()
                except cerr.OrbitError:
                    return False
                return any(r.broker_set == "tls-a" and r.master_address and len(r.replicas) == 2 for r in rows)
            proc.wait_until(ready, 90, 0.3, "a master of tls-a with both replicas routed")
            proc.wait_until(lambda: _try_create(admin), 60, 0.5, "topic created")
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        proc.stop_all(c.children)


def _try_create(admin: Admin) -> bool:
    try:
        admin.create_topic(TOPIC, 2)
        return True
    except cerr.OrbitError:
        return False


def _status(c: Cluster, addr: str) -> broker_pb2.BrokerStatus:
    with tls_channel(addr, c.ca) as ch:
        return broker_pb2_grpc.BrokerStub(ch).GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=5)


def test_every_server_says_tls_in_its_first_log_line(cluster):
    for c in cluster.children:
        first = next(line for line in c.log_path.read_text().splitlines() if " INFO " in line)
        assert " tls: " in first and "serves TLS" in first, (c.name, first)
    assert "client certificates required (mutual TLS)" in (cluster.root / "c1.log").read_text()


def test_plaintext_server_says_plaintext_first(tmp_path):
    addr = f"127.0.0.1:{net.free_port()}"
    c = proc.start("plain-ns", proc.orbitmq_argv("namesrv", "--listen", addr), log_path=tmp_path / "ns.log")
    try:
        net.wait_for_port(addr, 60)
        proc.wait_until(lambda: "namesrv listening" in (tmp_path / "ns.log").read_text(), 30)
        first = next(line for line in (tmp_path / "ns.log").read_text().splitlines() if " INFO " in line)
        assert " plaintext: name server on " in first
    finally:
        proc.stop_all([c])


def test_produce_and_consume_end_to_end_over_tls(cluster):
    ids = []
    with Producer(cluster.ns, tls=TlsConfig(ca_file=cluster.ca)) as p:
        for i in range(20):
            ids.append(p.send(Message(TOPIC, f"m{i}".encode())).msg_id)
    got: list[str] = []
    consumer = PullConsumer("tls-group", cluster.ns, tls=cluster.ca)
    consumer.subscribe(TOPIC, "*")
    consumer.start()
    try:
        deadline = time.monotonic() + 60
        while len(set(got)) < len(ids) and time.monotonic() < deadline:
            got += [m.msg_id for m in consumer.poll(1.0)]
    finally:
        consumer.close()
    assert set(ids) <= set(got)


def test_replication_stream_over_tls_follower_catches_up(cluster):
    with Producer(cluster.ns, tls=cluster.ca) as p:
        for _ in range(50):
            p.send(Message(TOPIC, b"r" * 512))
    statuses = {a: _status(cluster, a) for a, _ in cluster.brokers}
    master = next(a for a, s in statuses.items() if s.role == "MASTER")
    follower = next(a for a in statuses if a != master)
    target = _status(cluster, master).max_physical_offset
    assert target > 0
    proc.wait_until(lambda: _status(cluster, follower).max_physical_offset >= target, 60, 0.2,
                    "the follower to hold everything the master holds")
    assert _status(cluster, follower).role == "FOLLOWER"
    # the follower reached the master through TLS: its log shows the session, and no refusal
    follower_log = next(c for c in cluster.children if c.name == f"b{[a for a, _ in cluster.brokers].index(follower) + 1}")
    text = follower_log.log_path.read_text()
    assert "following broker_id=" in text and "CERTIFICATE" not in text.upper().replace("CERTIFICATES", "")


def test_plaintext_client_is_refused_with_a_clear_error(cluster):
    with pytest.raises(cerr.OrbitError) as ei, Producer(cluster.ns, tls=False, send_timeout_s=3) as p:
        p.send(Message(TOPIC, b"x"))
    assert "dials plaintext" in str(ei.value) and "ORBITMQ_TLS_CA" in str(ei.value)
    # straight to a broker: the same refusal, nothing answered
    with grpc.insecure_channel(cluster.brokers[0][0]) as ch, pytest.raises(grpc.RpcError) as e2:
        broker_pb2_grpc.BrokerStub(ch).GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=5)
    assert e2.value.code() == grpc.StatusCode.UNAVAILABLE


def test_wrong_ca_is_refused(cluster):
    with pytest.raises(cerr.OrbitError) as ei, Admin(cluster.ns, tls=cluster.other_ca, rpc_timeout_s=3) as admin:
        admin.cluster_list()
    assert "TLS handshake failed" in str(ei.value) and "not signed by the CA" in str(ei.value)
    # and a server presenting a certificate from another CA is refused the other way round too:
    # a follower-like client with the stranger's certificate cannot open the replication stream
    ctx = ssl.create_default_context(cafile=cluster.ca)
    ctx.load_cert_chain(*cluster.stranger)
    assert not _ha_answer(cluster.brokers[0][1], ctx).startswith(b"OH")


def test_mtls_controller_rejects_a_client_without_certificate(cluster):
    import asyncio

    from orbitmq.controller.client import ControllerClient, ControllerError
    from orbitmq.protos import controller_pb2 as cpb

    async def metadata(tls) -> object:
        client = ControllerClient([cluster.ctl], rpc_timeout_s=3, retry_deadline_s=3, tls=tls)
        try:
            return await client.call("GetMetadata", cpb.CtlGetMetadataRequest())
        finally:
            await client.close()

    with pytest.raises(ControllerError, match="requires client certificates"):
        asyncio.run(metadata(TlsConfig(ca_file=cluster.ca)))          # TLS, but no client certificate
    with pytest.raises(ControllerError, match="dials plaintext"):
        asyncio.run(metadata(False))                                   # plaintext
    md = asyncio.run(metadata(cluster.client_tls))                     # the cluster's client certificate
    assert md.leader_raft_address == cluster.raft


def _ha_answer(ha_addr: str, ctx: ssl.SSLContext | None) -> bytes:
    """Send a well-formed replication HELLO (a learner with a new id) to the replication port,
    over TLS with `ctx` or in plaintext; return the first bytes answered (b"" if the port closed or
    reset the connection, or the TLS handshake failed). A master that accepted the connection
    answers with a frame (WELCOME or REFUSE), whose magic is b"OH"."""
    from orbitmq.broker.ha import protocol as hp

    hello = hp.encode(hp.Hello(broker_id=99, learner=True, max_offset=0, epochs=()))
    host, port = net.split_addr(ha_addr)
    with socket.create_connection((host, port), timeout=20) as raw:
        raw.settimeout(20)
        try:
            if ctx is None:
                raw.sendall(hello)
                return raw.recv(64)
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(hello)
                return s.recv(64)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return b""


def test_replication_port_requires_tls_and_a_certificate(cluster):
    master = next(a for a, _ in cluster.brokers if _status(cluster, a).role == "MASTER")
    ha = dict(cluster.brokers)[master]
    assert not _ha_answer(ha, None).startswith(b"OH")                 # plaintext HELLO: no answer
    no_cert = ssl.create_default_context(cafile=cluster.ca)           # TLS without a client certificate
    assert not _ha_answer(ha, no_cert).startswith(b"OH")
    # control: the same HELLO over TLS with a certificate of the cluster CA reaches the master,
    # which answers with a frame (so the refusals above are the TLS layer's, not the HELLO's)
    ok = ssl.create_default_context(cafile=cluster.ca)
    ok.load_cert_chain(*cluster.certs["client"])
    assert _ha_answer(ha, ok).startswith(b"OH")


PROXY_CLIENT = """
import sys
from orbitmq.client.message import Message
from orbitmq.client.proxy_mode import ProxyProducer
with ProxyProducer(sys.argv[1], tls=sys.argv[2]) as p:
    r = p.send(Message(sys.argv[3], b"through a TLS proxy"))
print("SENT", r.msg_id)
"""


def test_cluster_mode_proxy_serves_tls_and_dials_the_cluster_with_tls(cluster, tmp_path):
    import subprocess
    import sys

    addr = f"127.0.0.1:{net.free_port()}"
    cert, key = cluster.certs["proxy"]
    child = cluster.start("proxy", ["proxy", "--mode", "cluster", "--namesrv", cluster.ns, "--listen", addr,
                                    "--set", f"tls_cert_file={cert}", "--set", f"tls_key_file={key}",
                                    "--set", f"tls_ca_file={cluster.ca}"])
    try:
        net.wait_for_port(addr, 60)
        script = tmp_path / "proxy_client.py"
        script.write_text(PROXY_CLIENT)
        # OrbitMQ's proxy-mode client runs in its own process (its protos clash with the official client's)
        r = subprocess.run([sys.executable, str(script), addr, cluster.ca, TOPIC], capture_output=True, text=True,
                           timeout=120)
        # stored: the proxy reached the TLS-only name server and broker with its own TLS settings
        assert r.returncode == 0 and "SENT " in r.stdout, r.stdout + r.stderr[-2000:]
        plain = subprocess.run([sys.executable, "-c", PROXY_CLIENT.replace("tls=sys.argv[2]", "tls=False"), addr,
                                cluster.ca, TOPIC], capture_output=True, text=True, timeout=120)
        assert plain.returncode != 0 and "SENT " not in plain.stdout
    finally:
        proc.stop_all([child])
