"""`orbitmq proxy` over TLS: the official RocketMQ 5 Python client, unchanged, with its own
`tls_enable=True` (trusting the cluster CA through gRPC's GRPC_DEFAULT_SSL_ROOTS_FILE_PATH) sends
and receives through a TLS proxy; a plaintext client gets no answer. The official client runs in
its own process (it cannot share one with OrbitMQ's generated `apache.rocketmq.v2`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from orbitmq.common import net, proc, tls_certs

pytestmark = pytest.mark.process

SCRIPT = textwrap.dedent("""
    import json, sys
    from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer
    endpoint, tls = sys.argv[1], sys.argv[2] == "tls"
    config = ClientConfiguration(endpoint, Credentials(), request_timeout=5)
    p = Producer(config, ("secure-orders",), tls_enable=tls)
    p.startup()
    try:
        m = Message(); m.topic = "secure-orders"; m.body = b"over tls"
        sent = p.send(m).message_id
    finally:
        p.shutdown()
    c = SimpleConsumer(config, "secure-group", {"secure-orders": FilterExpression("*")}, 3, tls_enable=tls)
    c.startup()
    got = []
    try:
        for _ in range(20):
            for x in c.receive(16, 30):
                got.append(x.message_id)
                c.ack(x)
            if sent in got:
                break
    finally:
        c.shutdown()
    print(json.dumps({"sent": sent, "received": sent in got}))
""")


def test_official_client_with_tls_through_a_tls_proxy(tmp_path):
    import importlib.util

    if importlib.util.find_spec("rocketmq") is None:   # not imported here: its protos clash with ours
        pytest.skip("rocketmq-python-client is in the [test] extras")
    certs = tls_certs.write_cluster_certs(tmp_path / "tls", {"proxy": []})
    ca = str(tmp_path / "tls" / "ca.pem")
    addr = f"127.0.0.1:{net.free_port()}"
    cert, key = certs["proxy"]
    child = proc.start("proxy", proc.orbitmq_argv(
        "proxy", "--mode", "local", "--listen", addr, "--data", str(tmp_path / "data"), "--auto-create-topics",
        "--group", "secure-group", "--set", f"tls_cert_file={cert}", "--set", f"tls_key_file={key}",
        "--set", f"tls_ca_file={ca}"), log_path=tmp_path / "proxy.log")
    try:
        net.wait_for_port(addr, 60)
        first = next(x for x in (tmp_path / "proxy.log").read_text().splitlines() if " INFO " in x)
        assert " tls: RocketMQ 5 proxy on " in first
        (tmp_path / "client.py").write_text(SCRIPT)
        env = {**os.environ, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": ca}
        r = subprocess.run([sys.executable, str(tmp_path / "client.py"), addr, "tls"], capture_output=True,
                           text=True, timeout=240, env=env)
        assert r.returncode == 0, r.stdout + r.stderr[-3000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["sent"] and out["received"] is True
        # a plaintext client is refused: it never gets an answer
        plain = subprocess.run([sys.executable, str(tmp_path / "client.py"), addr, "plain"], capture_output=True,
                               text=True, timeout=240, env=env)
        assert plain.returncode != 0 and '"received": true' not in plain.stdout
    finally:
        proc.stop_all([child])
