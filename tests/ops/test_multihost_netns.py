"""The multi-host deployment guide, run on separate network stacks.

Three "hosts" and a client, each in its own network namespace that this test creates (plus one
holding the bridge between them), each host with its own address 10.0.0.N on its own interface:
nothing can reach another node over loopback. Every process is started exactly as the guide's
systemd unit says (`config/multihost/orbitmq-*.service` ExecStart) with the guide's TOML file of
its host (`config/multihost/hostN-*.toml`; only /etc/orbitmq and /var/lib/orbitmq are moved into
the test's directory). From the client namespace: a topic is created, messages are sent, the
master's host loses its broker (SIGKILL), the set fails over, sends work again and everything
acknowledged is consumed.

Skipped, saying why, where network namespaces cannot be made (not root / no CAP_NET_ADMIN, no
`ip`, or `ip netns add` refused).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orbitmq.common import proc

pytestmark = pytest.mark.process

GUIDE = Path(__file__).resolve().parents[2] / "config" / "multihost"
HOSTS = {1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3"}
CLIENT_IP = "10.0.0.9"
NAMESRV = "10.0.0.1:9876,10.0.0.2:9876"
CONTROLLERS = "10.0.0.1:9878,10.0.0.2:9878,10.0.0.3:9878"
T = 120
SECRET_COMMANDS = ["umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > raft.secret",
                   "umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > cluster.secret"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _why_no_netns() -> str | None:
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        try:
            caps = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                            if line.startswith("CapEff:")), 16)
        except (OSError, StopIteration, ValueError):
            caps = 0
        if not caps & (1 << 12):   # CAP_NET_ADMIN
            return "creating network namespaces needs root or CAP_NET_ADMIN"
    probe = f"omqprobe{uuid.uuid4().hex[:6]}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"`ip netns add` is refused here: {r.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Net:
    """The namespaces of one test: a switch (bridge) and one per host and the client."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.switch = f"omq{tag}sw"
        self.ns = {name: f"omq{tag}{name}" for name in ("h1", "h2", "h3", "cl")}
        self.made: list[str] = []

    def up(self) -> None:
        _ip("netns", "add", self.switch)
        self.made.append(self.switch)
        _ip("-n", self.switch, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        addrs = {"h1": HOSTS[1], "h2": HOSTS[2], "h3": HOSTS[3], "cl": CLIENT_IP}
        for name, ns in self.ns.items():
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", self.switch, "link", "add", f"p{name}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.switch, "link", "set", f"p{name}", "master", "br0")
            _ip("-n", self.switch, "link", "set", f"p{name}", "up")
            _ip("-n", ns, "addr", "add", f"{addrs[name]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made.clear()

    def argv(self, name: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[name], *argv]


@pytest.fixture
def net():
    why = _why_no_netns()
    if why is not None:
        pytest.skip(f"multi-host test needs network namespaces: {why}")
    n = Net()
    try:
        n.up()
        yield n
    finally:
        n.down()


def unit_argv(kind: str, etc: Path) -> list[str]:
    """The guide's systemd ExecStart for `kind`, pointed at this interpreter and `etc`."""
    unit = (GUIDE / f"orbitmq-{kind}.service").read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M).group(1).split()
    assert exec_start[0].endswith("/bin/orbitmq")
    return proc.orbitmq_argv(*[a.replace("/etc/orbitmq", str(etc)) for a in exec_start[1:]])


def install_host(root: Path, i: int, secrets: Path) -> Path:
    """Host i's /etc/orbitmq (its TOML files from the guide, the secrets) under root/hostI."""
    etc, var = root / f"host{i}" / "etc", root / f"host{i}" / "var"
    etc.mkdir(parents=True)
    var.mkdir(parents=True)
    for f in ("raft.secret", "cluster.secret"):
        shutil.copy2(secrets / f, etc / f)
        os.chmod(etc / f, 0o600)
    for kind in ("controller", "namesrv", "broker"):
        src = GUIDE / f"host{i}-{kind}.toml"
        if src.exists():
            text = src.read_text().replace("/etc/orbitmq", str(etc)).replace("/var/lib/orbitmq", str(var))
            assert "127.0.0.1" not in text and "localhost" not in text
            (etc / f"{kind}.toml").write_text(text)
    return etc


def client(net: Net, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(net.argv("cl", proc.orbitmq_argv(*args)), capture_output=True, text=True, timeout=timeout)


def replicas(net: Net) -> dict:
    r = client(net, "admin", "controller", "replicas", "broker-a", "--cluster", "prod", "--controllers", CONTROLLERS,
               "--json", timeout=60)
    return json.loads(r.stdout) if r.returncode == 0 else {}


def test_guide_on_three_hosts_send_and_failover(net, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for line in SECRET_COMMANDS:      # the guide's commands, as written
        subprocess.run(["sh", "-c", line], cwd=secrets, check=True, timeout=30)
    assert all(len((secrets / f).read_text().strip()) == 64 and (secrets / f).stat().st_mode & 0o077 == 0
               for f in ("raft.secret", "cluster.secret"))
    children: dict[str, proc.Child] = {}
    try:
        for i in HOSTS:
            etc = install_host(tmp_path, i, secrets)
            for kind in ("controller", "namesrv", "broker"):
                if (etc / f"{kind}.toml").exists():
                    name = f"{kind}@host{i}"
                    children[name] = proc.start(name, net.argv(f"h{i}", unit_argv(kind, etc)),
                                                log_path=tmp_path / f"{name}.log")

        def whole() -> bool:
            v = replicas(net)
            return bool(v.get("master_id")) and len(v.get("sync_state_set", [])) == 3
        proc.wait_until(whole, T, 1.0, "a master whose sync-state-set holds all three hosts")
        v = replicas(net)
        assert {r["address"] for r in v["replicas"]} == {f"{ip}:10911" for ip in HOSTS.values()}

        r = client(net, "admin", "topic", "create", "orders", "--queues", "4", "--namesrv", NAMESRV)
        assert r.returncode == 0, r.stdout + r.stderr
        ids = tmp_path / "ids.txt"
        r = client(net, "produce", "--namesrv", NAMESRV, "--topic", "orders", "--count", "200", "--ids-out", str(ids))
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1])["sent"] == 200

        # the master's host loses its broker: another host's replica takes over
        old_id, old_epoch = int(v["master_id"]), int(v["master_epoch"])
        old_addr = next(x["address"] for x in v["replicas"] if int(x["broker_id"]) == old_id)
        host = next(i for i, ip in HOSTS.items() if old_addr.startswith(ip + ":"))
        children[f"broker@host{host}"].kill9()
        t0 = time.monotonic()
        proc.wait_until(lambda: (lambda x: int(x.get("master_id", 0)) not in (0, old_id)
                                 and int(x.get("master_epoch", 0)) > old_epoch)(replicas(net)), T, 0.5,
                        "a new master on another host")
        ids2 = tmp_path / "ids2.txt"
        r = client(net, "produce", "--namesrv", NAMESRV, "--topic", "orders", "--count", "200", "--ids-out", str(ids2))
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1])["sent"] == 200
        print(f"failover: new master and 200 sends within {time.monotonic() - t0:.1f} s of the kill")

        out = tmp_path / "consumed.txt"
        r = client(net, "consume", "--namesrv", NAMESRV, "--group", "g1", "--topic", "orders", "--mode", "pull",
                   "--out", str(out), "--count", "400", "--idle-exit", "30", timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        acked = {line.split()[0] for f in (ids, ids2) for line in f.read_text().splitlines() if line.strip()}
        consumed = {line.split()[0] for line in out.read_text().splitlines() if line.strip()}
        assert len(acked) == 400 and acked <= consumed
    except BaseException:
        for name, c in children.items():
            print(f"--- {name} ---\n{c.log_tail(30) if hasattr(c, 'log_tail') else ''}", file=sys.stderr)
        raise
    finally:
        proc.stop_all(list(children.values()), timeout=10)
