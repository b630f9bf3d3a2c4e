"""A whole OrbitMQ HA cluster on one machine as real child processes: controllers, name servers and
broker sets (replicas + learners), described by a `ClusterSpec` (TOML `[cluster]` table).

Used by `orbitmq cluster`, `orbitmq demo` and process tests. It only starts, watches and stops
processes (by PID); every decision (elections, replication) is the processes' own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from orbitmq.common import net, proc
from orbitmq.common.secrets_file import write_secret_file
from orbitmq.common.tls_grpc import channel as tls_channel
from orbitmq.protos import broker_pb2, broker_pb2_grpc


@dataclass
class ClusterSpec:
    """What to start. Ports: `base_port` 0 picks free ports; otherwise they are assigned in order
    from it (controllers, their Raft ports, name servers, then two per broker: client + HA)."""

    name: str = field(default="DefaultCluster", metadata={"doc": "cluster name"})
    dir: str = field(default="./orbitmq-cluster", metadata={"doc": "data and logs of every process"})
    host: str = field(default="127.0.0.1", metadata={"doc": "loopback address every process listens on"})
    base_port: int = field(default=0, metadata={"doc": "first port (0: free ports)"})
    controllers: int = field(default=3, metadata={"doc": "controller nodes (1, 3 or 5)"})
    controllers_in_namesrv: bool = field(default=False, metadata={
        "doc": "embed each controller in a name server (one name server per controller)"})
    namesrvs: int = field(default=2, metadata={"doc": "name servers (ignored with controllers_in_namesrv)"})
    broker_sets: list[str] = field(default_factory=lambda: ["broker-a"], metadata={"doc": "broker set names"})
    replicas: int = field(default=3, metadata={"doc": "replicas per broker set (electable)"})
    learners: int = field(default=1, metadata={"doc": "learners per broker set (replicate, never elected)"})
    broker_settings: dict[str, str] = field(default_factory=dict, metadata={"doc": "extra broker config keys"})
    controller_settings: dict[str, str] = field(default_factory=dict, metadata={
        "doc": "extra controller config keys"})
    raft_secret_file: str = field(default="", metadata={
        "doc": "the controllers' shared Raft secret (empty: a new one under the cluster dir; a multi-host "
               "deployment names one file whose content every host holds)"})
    cluster_secret_file: str = field(default="", metadata={
        "doc": "the nodes' shared cluster secret (empty: a new one under the cluster dir; multi-host: as above)"})
    secure: bool = field(default=False, metadata={
        "doc": "TLS on every gRPC port and replication stream, with a throwaway CA and node certificates made "
               "under DIR/tls (`cluster up --secure`)"})
    mtls: bool = field(default=False, metadata={
        "doc": "with secure: controllers and replication ports also require a client certificate from the "
               "cluster CA (mutual TLS between nodes; tools get DIR/tls/client.pem through cluster.env)"})
    sets: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "per-set overrides, [cluster.sets.NAME]: replicas, learners, settings (broker keys)"})
    nodes: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "per-node overrides, [cluster.nodes.NAME] (c1, n1, broker-a-1...): listen, raft_addr, ha_listen, "
               "settings (config keys); fixed addresses make the file a multi-host deployment"})

    def validate(self) -> None:
        if self.mtls and not self.secure:
            raise ValueError("mtls needs secure (TLS) as well")
        if self.controllers not in (1, 3, 5):
            raise ValueError(f"controllers must be 1, 3 or 5, got {self.controllers}")
        if self.replicas < 1 or self.learners < 0 or self.namesrvs < 1:
            raise ValueError("need replicas >= 1, learners >= 0, namesrvs >= 1")
        for name, o in self.sets.items():
            if name not in self.broker_sets:
                raise ValueError(f"sets.{name}: not in broker_sets {self.broker_sets}")
            bad = set(o) - {"replicas", "learners", "settings"} if isinstance(o, dict) else {"(not a table)"}
            if bad:
                raise ValueError(f"sets.{name}: unknown key(s) {sorted(bad)}; known: replicas, learners, settings")
            if int(o.get("replicas", 1)) < 1 or int(o.get("learners", 0)) < 0:
                raise ValueError(f"sets.{name}: need replicas >= 1, learners >= 0")
        for name, o in self.nodes.items():
            bad = set(o) - {"listen", "raft_addr", "ha_listen", "settings"} if isinstance(o, dict) else {"?"}
            if bad:
                raise ValueError(f"nodes.{name}: unknown key(s) {sorted(bad)}; known: listen, raft_addr, "
                                 "ha_listen, settings")

    def set_shape(self, broker_set: str) -> tuple[int, int]:
        """(replicas, learners) of one broker set, per-set overrides applied."""
        o = self.sets.get(broker_set, {})
        return int(o.get("replicas", self.replicas)), int(o.get("learners", self.learners))


@dataclass
class BrokerProc:
    """One broker replica's identity, addresses and process."""

    name: str
    broker_set: str
    broker_id: int
    addr: str
    ha_addr: str
    store: Path
    learner: bool = False
    child: proc.Child | None = None


class LocalCluster:
    """Starts the processes of a `ClusterSpec` under `spec.dir`; stop() stops them all by PID."""

    def __init__(self, spec: ClusterSpec) -> None:
        spec.validate()
        if spec.secure:
            raise ValueError("a secure (TLS) cluster is started by `orbitmq cluster up --secure` (ChaosCluster), "
                             "not by `cluster run`")
        self.spec = spec
        self.root = Path(spec.dir).resolve()
        self.logs_dir = self.root / "logs"
        self.children: list[proc.Child] = []
        self._ports = self._port_source()
        n = spec.controllers
        self.controller_addrs = [self._addr() for _ in range(n)]
        self.raft_addrs = [self._addr() for _ in range(n)]
        if spec.controllers_in_namesrv:
            self.namesrv_addrs = list(self.controller_addrs)
        else:
            self.namesrv_addrs = [self._addr() for _ in range(spec.namesrvs)]
        self.brokers: dict[str, BrokerProc] = {}
        for bset in spec.broker_sets:
            for i in range(1, spec.replicas + spec.learners + 1):
                self.add_broker(bset, i, learner=i > spec.replicas)
        self._stubs: dict[str, tuple[grpc.Channel, broker_pb2_grpc.BrokerStub]] = {}

    # ---- ports ------------------------------------------------------------------------------------

    def _port_source(self):
        if self.spec.base_port:
            return iter(range(self.spec.base_port, 65536))
        total = self.spec.controllers * 3 + self.spec.namesrvs + 2 * len(self.spec.broker_sets) * (
            self.spec.replicas + self.spec.learners)
        return iter(net.free_ports(total, self.spec.host))

    def _addr(self) -> str:
        port = next(self._ports, None)
        return f"{self.spec.host}:{port if port is not None else net.free_port(self.spec.host)}"

    def add_broker(self, broker_set: str, broker_id: int, learner: bool = False) -> BrokerProc:
        """Declare one more replica (started by `start_broker(name)`); its name is `SET-ID`."""
        name = f"{broker_set}-{broker_id}"
        if name in self.brokers:
            raise ValueError(f"broker {name} already declared")
        b = BrokerProc(name, broker_set, broker_id, self._addr(), self._addr(), self.root / name, learner=learner)
        self.brokers[name] = b
        return b

    # ---- start / stop -------------------------------------------------------------------------------

    def _start(self, name: str, args: list[str]) -> proc.Child:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        child = proc.start(name, proc.orbitmq_argv(*args), log_path=self.logs_dir / f"{name}.log")
        self.children = [c for c in self.children if c.name != name] + [child]
        return child

    def _controller_args(self, i: int) -> list[str]:
        peers = ",".join(a for j, a in enumerate(self.raft_addrs) if j != i)
        data = str(self.root / f"controller{i + 1}")
        secret = str(self.spec.raft_secret_file or write_secret_file(self.root / "raft.secret"))
        extra: list[str] = []
        if self.spec.controllers_in_namesrv:
            args = ["namesrv", "--listen", self.controller_addrs[i], "--enable-controller",
                    "--controller-raft-addr", self.raft_addrs[i], "--controller-data-dir", data,
                    "--controller-raft-secret-file", secret, *self.trust_args()]
            if peers:
                args += ["--controller-peers", peers]
            for k, v in self.spec.controller_settings.items():
                extra += ["--controller-set", f"{k}={v}"]
            return args + extra
        args = ["controller", "--node-id", f"c{i + 1}", "--listen", self.controller_addrs[i],
                "--raft-addr", self.raft_addrs[i], "--data-dir", data, "--raft-secret-file", secret,
                "--set", f"cluster_secret_file={self.cluster_secret()}"]
        if peers:
            args += ["--peers", peers]
        for k, v in self.spec.controller_settings.items():
            extra += ["--set", f"{k}={v}"]
        return args + extra

    def start_controller(self, i: int) -> proc.Child:
        name = f"namesrv{i + 1}" if self.spec.controllers_in_namesrv else f"controller{i + 1}"
        return self._start(name, self._controller_args(i))

    def cluster_secret(self) -> str:
        return str(self.spec.cluster_secret_file or write_secret_file(self.root / "cluster.secret"))

    def trust_args(self) -> list[str]:
        """Name server settings: accept only brokers signing with the cluster secret, and masters the
        controllers vouch for."""
        return ["--set", f"cluster_secret_file={self.cluster_secret()}",
                "--set", "controllers=" + ",".join(self.controller_addrs)]

    def start_namesrv(self, i: int) -> proc.Child:
        return self._start(f"namesrv{i + 1}", ["namesrv", "--listen", self.namesrv_addrs[i], *self.trust_args()])

    def broker_args(self, b: BrokerProc) -> list[str]:
        args = ["broker", "--listen", b.addr, "--namesrv", ",".join(self.namesrv_addrs),
                "--store-dir", str(b.store), "--cluster", self.spec.name, "--broker-set", b.broker_set,
                "--broker-id", str(b.broker_id), "--set", "ha_mode=controller", "--set", f"ha_listen={b.ha_addr}",
                "--set", f"ha_address={b.ha_addr}",
                "--set", "controllers=" + ",".join(self.controller_addrs),
                "--set", f"ha_learner={'true' if b.learner else 'false'}",
                "--set", f"cluster_secret_file={self.cluster_secret()}"]
        for k, v in self.spec.broker_settings.items():
            args += ["--set", f"{k}={v}"]
        return args

    def start_broker(self, name: str) -> proc.Child:
        b = self.brokers[name]
        b.child = self._start(name, self.broker_args(b))
        return b.child

    def start_controllers(self, timeout: float = 60.0) -> None:
        """Start every controller (and name server, when they are embedded) and wait for them."""
        for i in range(self.spec.controllers):
            self.start_controller(i)
        for addr in self.controller_addrs:
            net.wait_for_port(addr, timeout)

    def start_namesrvs(self, timeout: float = 60.0) -> None:
        """Start the standalone name servers (none when controllers are embedded in them)."""
        if not self.spec.controllers_in_namesrv:
            for i in range(len(self.namesrv_addrs)):
                self.start_namesrv(i)
        for addr in self.namesrv_addrs:
            net.wait_for_port(addr, timeout)

    def start(self, timeout: float = 60.0) -> None:
        """Start everything and wait until every process listens; then write `cluster.json`."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.start_controllers(timeout)
            self.start_namesrvs(timeout)
            for name in self.brokers:
                self.start_broker(name)
            for b in self.brokers.values():
                net.wait_for_port(b.addr, timeout)
        except BaseException:
            self.stop()
            raise
        self.write_state()

    def stop(self, timeout: float = 10.0) -> None:
        for ch, _ in self._stubs.values():
            ch.close()
        self._stubs.clear()
        proc.stop_all(self.children, timeout=timeout)

    def kill9(self, name: str) -> None:
        """SIGKILL one process by name (a broker, `controllerN` or `namesrvN`)."""
        for c in self.children:
            if c.name == name:
                c.kill9()
                return
        raise KeyError(f"no process named {name!r}")

    def child(self, name: str) -> proc.Child:
        for c in self.children:
            if c.name == name:
                return c
        raise KeyError(f"no process named {name!r}")

    def write_state(self) -> Path:
        """`cluster.json` in the cluster dir: every process's name, PID, addresses and log file."""
        state = {
            "cluster": self.spec.name,
            "controllers": self.controller_addrs,
            "namesrvs": self.namesrv_addrs,
            "processes": [{"name": c.name, "pid": c.pid, "log": str(c.log_path)} for c in self.children],
            "brokers": [{"name": b.name, "broker_set": b.broker_set, "broker_id": b.broker_id, "address": b.addr,
                         "ha_address": b.ha_addr, "store": str(b.store), "learner": b.learner,
                         "pid": b.child.pid if b.child else None} for b in self.brokers.values()],
        }
        path = self.root / "cluster.json"
        path.write_text(json.dumps(state, indent=2) + "\n")
        return path

    # ---- observation ----------------------------------------------------------------------------------

    def _stub(self, addr: str) -> broker_pb2_grpc.BrokerStub:
        if addr not in self._stubs:
            ch = tls_channel(addr)   # the process default ($ORBITMQ_TLS_*; LocalCluster itself runs plaintext)
            self._stubs[addr] = (ch, broker_pb2_grpc.BrokerStub(ch))
        return self._stubs[addr][1]

    def status(self, name: str, timeout: float = 1.0) -> broker_pb2.BrokerStatus | None:
        """A broker's own status (role, epoch, offsets, sync-state-set), or None if it does not answer."""
        try:
            return self._stub(self.brokers[name].addr).GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(),
                                                                       timeout=timeout)
        except grpc.RpcError:
            return None

    def master_of(self, broker_set: str) -> str | None:
        """Name of the replica that says it is master with the highest epoch, or None."""
        best: tuple[int, str] | None = None
        for name, b in self.brokers.items():
            if b.broker_set != broker_set or (b.child and not b.child.alive()):
                continue
            st = self.status(name)
            if st is not None and st.role == "MASTER" and (best is None or st.epoch > best[0]):
                best = (st.epoch, name)
        return best[1] if best else None

    def sync_state_set(self, name: str) -> set[int]:
        st = self.status(name)
        raw = dict(st.stats).get("ha_sss", "") if st is not None else ""
        return {int(x) for x in raw.split(",") if x}

    def wait_ready(self, timeout: float = 90.0) -> dict[str, str]:
        """Wait until every broker set has a master whose sync-state-set holds all its replicas."""
        masters: dict[str, str] = {}

        def ready() -> bool:
            for bset in self.spec.broker_sets:
                m = self.master_of(bset)
                if m is None or len(self.sync_state_set(m)) < self.spec.replicas:
                    return False
                masters[bset] = m
            return True

        proc.wait_until(ready, timeout, 0.2, "a master with a full sync-state-set in every broker set")
        return masters

    def logs(self, n: int = 40) -> str:
        """The last `n` log lines of every process, for failure reports."""
        return "\n".join(f"--- {c.name} (pid {c.pid}) ---\n{c.log_tail(n)}" for c in self.children)

    def describe(self) -> str:
        lines = [f"cluster {self.spec.name} in {self.root}",
                 f"  controllers: {', '.join(self.controller_addrs)}",
                 f"  name servers: {', '.join(self.namesrv_addrs)}"]
        for name, b in self.brokers.items():
            st = self.status(name)
            role = f"{st.role} epoch {st.epoch}" if st else "not answering"
            kind = "learner" if b.learner else "replica"
            lines.append(f"  {name:<12} {kind:<8} {b.addr:<16} ha {b.ha_addr:<16} {role}")
        return "\n".join(lines)
