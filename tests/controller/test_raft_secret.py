"""The controllers' Raft port: a group refuses to start without a shared secret, and with one a
stranger's message is dropped before pysyncobj unpickles it (real processes, real pysyncobj)."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from orbitmq.common import net, proc
from orbitmq.common.config import ConfigError
from orbitmq.common.secrets_file import write_secret_file
from orbitmq.controller.client import ControllerClient
from orbitmq.controller.config import SECRET_ENV, ControllerConfig

PEERS = ["127.0.0.1:9889", "127.0.0.1:9890"]


def _cfg(**kw) -> ControllerConfig:
    return ControllerConfig(raft_addr="127.0.0.1:9888", **kw)


def test_multi_node_group_without_secret_is_refused_with_how_to():
    with pytest.raises(ConfigError, match="needs a Raft secret.*raft_secret_file"):
        _cfg(peers=PEERS).raft_password(env={})


def test_secret_comes_from_file_then_environment(tmp_path):
    f = write_secret_file(tmp_path / "raft.secret")
    assert _cfg(peers=PEERS, raft_secret_file=str(f)).raft_password(env={}) == f.read_text().strip()
    assert (f.stat().st_mode & 0o777) == 0o600
    assert _cfg(peers=PEERS).raft_password(env={SECRET_ENV: "x" * 20}) == "x" * 20


@pytest.mark.parametrize("content, words", [(None, "cannot read"), ("short", "at least 16")])
def test_unreadable_or_weak_secret_names_the_file(tmp_path, content, words):
    f = tmp_path / "raft.secret"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ConfigError, match=f"{f}.*{words}|{words}"):
        _cfg(peers=PEERS, raft_secret_file=str(f)).validate()


def test_insecure_mode_only_on_loopback():
    assert _cfg(peers=PEERS, insecure_raft=True).raft_password(env={}) is None
    with pytest.raises(ConfigError, match="only for loopback-only tests; 10.0.0.7:9890"):
        _cfg(peers=["127.0.0.1:9889", "10.0.0.7:9890"], insecure_raft=True).validate()


def test_single_node_gets_a_private_random_secret():
    a, b = _cfg().raft_password(env={}), _cfg().raft_password(env={})
    assert a and b and a != b


class _Probe:
    """Unpickling this creates a file: proof that the receiver ran a function chosen by the sender."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _send_probe(raft_addr: str, marker: Path) -> None:
    data = zlib.compress(pickle.dumps(_Probe(str(marker))), 3)
    host, port = net.split_addr(raft_addr)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(struct.pack("i", len(data)) + data)
        s.settimeout(5)
        try:
            s.recv(1)   # returns when the node drops us (or after 5 s)
        except OSError:
            pass


def _start_group(tmp: Path, secure: bool) -> tuple[list[proc.Child], list[str], list[str]]:
    ports = net.free_ports(6)
    listen = [f"127.0.0.1:{p}" for p in ports[:3]]
    raft = [f"127.0.0.1:{p}" for p in ports[3:]]
    children = []
    for i in range(3):
        args = ["controller", "--node-id", f"c{i}", "--listen", listen[i], "--raft-addr", raft[i],
                "--peers", ",".join(raft[:i] + raft[i + 1:]), "--data-dir", str(tmp / f"c{i}")]
        args += (["--raft-secret-file", str(write_secret_file(tmp / "raft.secret"))] if secure
                 else ["--set", "insecure_raft=true"])
        children.append(proc.start(f"c{i}", proc.orbitmq_argv(*args), log_path=tmp / f"c{i}.log"))
    return children, listen, raft


def _wait_leader(listen: list[str], timeout: float = 90.0) -> None:
    async def go() -> None:
        c = ControllerClient(listen)
        try:
            await c.wait_leader(timeout)
        finally:
            await c.close()

    asyncio.run(go())


@pytest.mark.process
def test_group_without_secret_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    p = subprocess.run(proc.orbitmq_argv("controller", "--listen", f"127.0.0.1:{net.free_port()}",
                                         "--raft-addr", "127.0.0.1:9888", "--peers", ",".join(PEERS),
                                         "--data-dir", str(tmp_path / "c")),
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2 and "needs a Raft secret" in p.stdout + p.stderr


@pytest.mark.process
@pytest.mark.parametrize("secure", [False, True], ids=["insecure-loopback", "secret"])
def test_a_strangers_pickle_runs_only_without_a_secret(tmp_path, secure):
    children, listen, raft = _start_group(tmp_path, secure)
    try:
        _wait_leader(listen)
        marker = tmp_path / "probe-ran"
        for addr in raft:
            _send_probe(addr, marker)
        if secure:
            assert not marker.exists(), "a node unpickled a stranger's message"
            _wait_leader(listen)   # and the group still works
        else:
            # the probe itself works: without a secret it runs (which is why a group refuses that)
            deadline = time.monotonic() + 30
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert marker.exists()
    finally:
        proc.stop_all(children)


@pytest.mark.process
def test_node_calls_and_admin_writes_need_the_cluster_secret(tmp_path):
    """With a cluster secret, a stranger can neither register a broker nor elect a master; a signed
    admin call gets through to the rules (here: refused for an unknown set, not for its signature)."""
    import grpc

    from orbitmq.controller.client import ControllerError
    from orbitmq.protos import controller_pb2 as pb
    from orbitmq.protos import controller_pb2_grpc as pbg

    listen, raft = (f"127.0.0.1:{p}" for p in net.free_ports(2))
    secret = write_secret_file(tmp_path / "cluster.secret")
    c = proc.start("c", proc.orbitmq_argv("controller", "--listen", listen, "--raft-addr", raft, "--data-dir",
                                          str(tmp_path / "c"), "--set", f"cluster_secret_file={secret}"),
                   log_path=tmp_path / "c.log")
    try:
        _wait_leader([listen])
        stub = pbg.ControllerStub(grpc.insecure_channel(listen))
        for call, req in ((stub.RegisterBroker, pb.CtlRegisterBrokerRequest(cluster="x", broker_set="s", broker_id=1,
                                                                             address="127.0.0.1:1")),
                          (stub.ElectMaster, pb.CtlElectMasterRequest(cluster="x", broker_set="s", broker_id=1,
                                                                       designate=True))):
            with pytest.raises(grpc.RpcError) as e:
                call(req, timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert dict(e.value.trailing_metadata())["orbitmq-error"] == "NO_PERMISSION"
        stub.GetMetadata(pb.CtlGetMetadataRequest(), timeout=10)   # reads stay open

        async def signed(key: bytes) -> str:
            client = ControllerClient([listen], secret=key, retry_deadline_s=5)
            try:
                r = await client.elect_master("x", "s", 1, designate=True)
                return r.result.code
            except ControllerError as err:
                return err.code
            finally:
                await client.close()

        assert asyncio.run(signed(b"w" * 32)) == "NO_PERMISSION"       # the wrong secret
        assert asyncio.run(signed(secret.read_text().strip().encode())) not in ("NO_PERMISSION", "")
    finally:
        proc.stop_all([c])
