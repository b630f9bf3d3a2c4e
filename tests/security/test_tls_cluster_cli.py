"""`orbitmq cluster up --secure --mtls`: one command makes a throwaway CA and node certificates and
starts a TLS cluster (controllers and replication requiring client certificates); with its
cluster.env, `cluster status`, `admin`, `produce` and `consume` work, and without the TLS
variables the same commands are refused. Real processes, all through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process


def orbitmq(*args: str, env: dict | None = None, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orbitmq.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def cluster_env(d: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITMQ_")}
    for line in (d / "cluster.env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def test_cluster_up_secure_then_send_and_consume(tmp_path):
    d = tmp_path / "secure"
    try:
        r = orbitmq("cluster", "up", "--dir", str(d), "--mtls", "--set", "controllers=1", "--set", "namesrvs=1",
                    "--set", "replicas=2", "--set", "learners=0", timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "TLS on every gRPC port and replication stream" in r.stdout and "(mTLS)" in r.stdout
        assert (d / "tls" / "ca.pem").exists() and (d / "tls" / "broker-a-1.pem").exists()
        env = cluster_env(d)
        assert env["ORBITMQ_TLS_CA"] == str(d / "tls" / "ca.pem") and env["ORBITMQ_TLS_CERT"]
        for name in ("c1", "n1", "broker-a-1", "broker-a-2"):
            conf = (d / "conf" / f"{name}.toml").read_text()
            assert f'tls_cert_file = "{d / "tls" / name}.pem"' in conf
            first = next(x for x in (d / "logs" / f"{name}.log").read_text().splitlines() if " INFO " in x)
            assert " tls: " in first

        st = orbitmq("cluster", "status", "--dir", str(d), "--json")
        assert st.returncode == 0, st.stderr
        s = json.loads(st.stdout)["sets"]["broker-a"]
        assert s["master"] and len(s["sss"]) == 2

        assert orbitmq("admin", "topic", "create", "secure-t", env=env).returncode == 0
        p = orbitmq("produce", "--topic", "secure-t", "--count", "10", env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        assert json.loads(p.stdout.strip().splitlines()[-1])["sent"] == 10
        c = orbitmq("consume", "--topic", "secure-t", "--group", "g", "--count", "10", "--seconds", "60", env=env)
        assert c.returncode == 0 and json.loads(c.stdout.strip().splitlines()[-1])["consumed"] == 10, c.stderr
        md = orbitmq("admin", "controller", "metadata", env=env)
        assert md.returncode == 0 and "LEADER" in md.stdout, md.stdout + md.stderr

        # without the TLS variables: the name server refuses a plaintext client, with the reason
        plain = {k: v for k, v in env.items() if not k.startswith("ORBITMQ_TLS_")}
        r = orbitmq("admin", "cluster", "list", "--timeout", "3", env=plain)
        assert r.returncode != 0 and "dials plaintext" in r.stderr
        # the CA but no client certificate: the controllers (mTLS) refuse
        no_cert = {k: v for k, v in env.items() if k not in ("ORBITMQ_TLS_CERT", "ORBITMQ_TLS_KEY")}
        r = orbitmq("admin", "controller", "metadata", "--timeout", "3", env=no_cert)
        assert "LEADER" not in r.stdout and "unreachable" in r.stdout + r.stderr
        assert "requires client certificates" in r.stdout + r.stderr
    finally:
        orbitmq("cluster", "down", "--dir", str(d), timeout=120)
