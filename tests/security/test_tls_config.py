"""TLS settings and certificates without servers: key consistency, file checks naming the file,
the certificates a local cluster gets (SANs, signed by the CA), the first log line, how a client's
`tls=` resolves, the hints added to handshake failures, and the tls_* keys of every process."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509

from orbitmq.broker.config import BrokerConfig
from orbitmq.chaos.cluster_config import node_config, plan_nodes, tls_keys
from orbitmq.common import tls as tlsmod
from orbitmq.common import tls_certs
from orbitmq.common.config import ConfigError
from orbitmq.common.local_cluster import ClusterSpec
from orbitmq.common.tls import TlsConfig, TlsError
from orbitmq.common.tls_grpc import handshake_hint
from orbitmq.controller.config import ControllerConfig
from orbitmq.namesrv.config import NamesrvConfig
from orbitmq.proxy.config import ProxyConfig


@pytest.fixture
def certs(tmp_path):
    out = tls_certs.write_cluster_certs(tmp_path / "tls", {"n1": ["127.0.0.2", "node1.example"]})
    return tmp_path / "tls", out["n1"]


def test_cert_and_key_go_together_and_client_auth_needs_a_ca():
    with pytest.raises(TlsError, match="tls_cert_file and tls_key_file go together"):
        TlsConfig(cert_file="a.pem").validate()
    with pytest.raises(TlsError, match="tls_client_auth needs"):
        TlsConfig(cert_file="a.pem", key_file="a.key", client_auth=True).validate()
    TlsConfig().validate()
    TlsConfig(ca_file="ca.pem").validate()   # a client-only setting


def test_serving_and_dialing_rules():
    assert not TlsConfig().serves_tls and not TlsConfig().dials_tls
    assert TlsConfig(ca_file="ca").dials_tls and not TlsConfig(ca_file="ca").serves_tls
    both = TlsConfig(cert_file="c", key_file="k", ca_file="ca")
    assert both.serves_tls and both.dials_tls


def test_files_are_checked_and_errors_name_the_file(certs, tmp_path):
    d, (cert, key) = certs
    TlsConfig(cert_file=cert, key_file=key, ca_file=str(d / "ca.pem"), client_auth=True).check_files()
    with pytest.raises(TlsError, match="tls_ca_file: no such file .*missing.pem"):
        TlsConfig(ca_file=str(tmp_path / "missing.pem")).check_files()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(TlsError, match=f"tls_ca_file {garbage}: not a PEM CA bundle"):
        TlsConfig(ca_file=str(garbage)).check_files()
    other = tls_certs.write_cluster_certs(tmp_path / "other", {"x": []})["x"]
    with pytest.raises(TlsError, match="not a PEM certificate and its matching private key"):
        TlsConfig(cert_file=cert, key_file=other[1]).check_files()   # key of another certificate


def test_node_certificates_name_their_hosts_and_are_signed_by_the_ca(certs):
    d, (cert_path, key_path) = certs
    cert = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"),
                                                            ipaddress.ip_address("127.0.0.2")}
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "node1.example"}
    assert (d / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (d / "n1.key").stat().st_mode & 0o777 == 0o600


def test_certificates_are_made_once(tmp_path):
    a = tls_certs.write_cluster_certs(tmp_path, {"n1": []})
    before = (tmp_path / "ca.pem").read_bytes(), open(a["n1"][0], "rb").read()
    b = tls_certs.write_cluster_certs(tmp_path, {"n1": [], "n2": []})
    assert ((tmp_path / "ca.pem").read_bytes(), open(b["n1"][0], "rb").read()) == before
    ca = x509.load_pem_x509_certificate(before[0])
    x509.load_pem_x509_certificate(open(b["n2"][0], "rb").read()).verify_directly_issued_by(ca)


def test_first_log_line_says_plaintext_or_tls():
    assert tlsmod.mode_line(TlsConfig(), "broker gRPC", "127.0.0.1:1").startswith(
        "plaintext: broker gRPC on 127.0.0.1:1 is unencrypted")
    line = tlsmod.mode_line(TlsConfig(cert_file="c.pem", key_file="k", ca_file="ca.pem", client_auth=True),
                            "controller gRPC", "h:2")
    assert line.startswith("tls: controller gRPC on h:2 serves TLS with c.pem") and "mutual TLS" in line


def test_client_tls_argument_resolution(monkeypatch):
    monkeypatch.delenv(tlsmod.ENV_CA, raising=False)
    monkeypatch.delenv(tlsmod.ENV_CERT, raising=False)
    monkeypatch.delenv(tlsmod.ENV_KEY, raising=False)
    assert tlsmod.resolve(None) == TlsConfig()
    monkeypatch.setenv(tlsmod.ENV_CA, "/x/ca.pem")
    assert tlsmod.resolve(None) == TlsConfig(ca_file="/x/ca.pem")
    assert tlsmod.resolve(False) == TlsConfig()
    assert tlsmod.resolve("/y/ca.pem") == TlsConfig(ca_file="/y/ca.pem")
    mine = TlsConfig(ca_file="a", cert_file="b", key_file="c")
    assert tlsmod.resolve(mine) is mine
    tlsmod.install(mine)
    try:
        assert tlsmod.resolve(None) is mine
    finally:
        tlsmod.install(None)
    with pytest.raises(TypeError):
        tlsmod.resolve(3)   # type: ignore[arg-type]


def test_env_lines_for_cluster_env():
    assert tlsmod.env_lines(TlsConfig(ca_file="/d/ca.pem")) == ["export ORBITMQ_TLS_CA=/d/ca.pem"]
    assert tlsmod.from_env({"ORBITMQ_TLS_CA": "a", "ORBITMQ_TLS_CERT": "b", "ORBITMQ_TLS_KEY": "c"}) == \
        TlsConfig(ca_file="a", cert_file="b", key_file="c")


@pytest.mark.parametrize("details, dials_tls, words", [
    ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed", False,
     "dials plaintext"),
    ("Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED", True,
     "not signed by the CA"),
    ("Ssl handshake failed: SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
     True, "does not speak TLS"),
    ("connection refused", False, ""),
    ("Socket closed", True, ""),
])
def test_handshake_hints(details, dials_tls, words):
    hint = handshake_hint(details, dials_tls)
    assert (words in hint) if words else hint == ""


@pytest.mark.parametrize("details, has_cert, words", [
    ("ipv4:127.0.0.1:1: Socket closed", False, "requires client certificates"),
    ("ipv4:127.0.0.1:1: Socket closed", True, ""),
])
def test_handshake_hint_for_missing_client_certificate(details, has_cert, words):
    hint = handshake_hint(details, True, has_cert)
    assert (words in hint) if words else hint == ""


@pytest.mark.parametrize("cls", [BrokerConfig, NamesrvConfig, ControllerConfig, ProxyConfig])
def test_every_process_config_has_the_tls_keys_and_checks_them(cls, certs, tmp_path):
    d, (cert, key) = certs
    extra = {"raft_addr": "127.0.0.1:9888"} if cls is ControllerConfig else {}
    ok = cls(tls_cert_file=cert, tls_key_file=key, tls_ca_file=str(d / "ca.pem"), tls_client_auth=True, **extra)
    ok.validate()
    assert tlsmod.from_config(ok).client_auth
    with pytest.raises(ConfigError, match="no such file"):
        cls(tls_cert_file=str(tmp_path / "nope.pem"), tls_key_file=key, **extra).validate()
    with pytest.raises(ConfigError, match="go together"):
        cls(tls_cert_file=cert, **extra).validate()


def test_broker_replication_client_auth_needs_tls(certs):
    with pytest.raises(ConfigError, match="ha_tls_client_auth needs"):
        BrokerConfig(ha_tls_client_auth=True).validate()


def test_secure_cluster_node_configs():
    spec = ClusterSpec(secure=True, mtls=True)
    nodes = plan_nodes(spec, iter(range(20000, 20100)))
    by_kind = {n.kind: n for n in nodes}
    cert = ("/d/x.pem", "/d/x.key")
    ctl = node_config(by_kind["controller"], nodes, spec, "/d/c", {}, {},
                      tls_keys(by_kind["controller"], spec, cert, "/d/ca.pem"))
    assert ctl["tls_client_auth"] is True and ctl["tls_ca_file"] == "/d/ca.pem"
    brk = node_config(by_kind["broker"], nodes, spec, "/d/b", {}, {}, tls_keys(by_kind["broker"], spec, cert, "/d/ca"))
    assert brk["ha_tls_client_auth"] is True and "tls_client_auth" not in brk   # clients need no certificate
    ns = tls_keys(by_kind["namesrv"], spec, cert, "/d/ca")
    assert "tls_client_auth" not in ns and ns["tls_cert_file"] == "/d/x.pem"
    with pytest.raises(ValueError, match="mtls needs secure"):
        ClusterSpec(mtls=True).validate()


def test_every_grpc_port_and_channel_goes_through_the_tls_factory():
    """No server or client code opens a gRPC port or channel by itself (benchmarks' plaintext
    baselines excepted): TLS then applies everywhere or nowhere."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".venv/", "tests/", "bench/", "build/")) or rel == "common/tls_grpc.py" \
                or "/site-packages/" in rel:
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(k in code for k in ("insecure_channel(", "add_insecure_port(", "secure_channel(",
                                       "add_secure_port(")) and '"""' not in code and "`" not in code:
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "use orbitmq.common.tls_grpc (channel / aio_channel / add_port):\n" + "\n".join(offenders)
