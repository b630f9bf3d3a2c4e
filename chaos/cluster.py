"""`ChaosCluster`: a whole OrbitMQ cluster as detached local processes, with process faults
(kill -9, pause, resume, restart) and, in chaos mode, network faults on any directed link.

In chaos mode every node-to-node link goes through its own Toxiproxy proxy (`topology.py`
plans them, `links.py` applies faults). The processes know nothing about it: each one gets
the real (advertised) addresses of its peers in its ordinary config plus a `dial_map` that
sends each of them to the proxy of that link (`orbitmq.common.dial_map`). The pseudo-node
`client` is this process (and any tool started with DIR/cluster.env): `up`/`open` install the
client's dial map here, so producers and consumers reach brokers and name servers through the
client links too.

Everything is recorded in DIR/cluster.json (addresses, argv, PIDs with start times, links), so
`open(DIR)` from another process (the `orbitmq cluster` commands) can act on a running cluster;
`down` stops it by PID. Observation (`status`, `master_of`, ...) talks to the processes
directly, never through a proxy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from orbitmq.chaos import cluster_procs as procs
from orbitmq.chaos.cluster_config import node_config, node_hosts, plan_nodes, port_count, tls_keys, to_toml
from orbitmq.chaos.links import LinkProxies
from orbitmq.chaos.topology import (
    CLIENT,
    Link,
    NodePlan,
    cut_streams,
    dial_maps,
    directed_streams,
    expand,
    plan_links,
)
from orbitmq.common import dial_map, net
from orbitmq.common import proc as proclib
from orbitmq.common import tls as tlsmod
from orbitmq.common.local_cluster import ClusterSpec
from orbitmq.common.node_auth import load_secret
from orbitmq.common.node_auth_grpc import signed_channel
from orbitmq.common.secrets_file import write_secret_file
from orbitmq.common.tls import TlsConfig
from orbitmq.common.tls_certs import write_cluster_certs
from orbitmq.common.tls_grpc import channel as tls_channel
from orbitmq.protos import broker_pb2, broker_pb2_grpc, namesrv_pb2, namesrv_pb2_grpc
from orbitmq.protos import controller_pb2 as cpb
from orbitmq.protos import controller_pb2_grpc as cpbg

STATE = "cluster.json"
ENV_FILE = "cluster.env"
LEADER_WAIT_S = 5.0    # _leader_call: how long an election under way may keep it from an answer


class ClusterError(RuntimeError):
    """The cluster cannot do what was asked (not running, unknown node, no chaos mode, ...)."""


class ProcessExited(ClusterError):
    """A process of the cluster exited while it was expected to run."""


def _toxiproxy(url: str | None, log_dir: Path) -> tuple[str, int | None, Any]:
    """(API url, PID if we started a server, handle) for `url`, $TOXIPROXY_URL or a new embedded server."""
    url = url or os.environ.get("TOXIPROXY_URL") or None
    try:
        from orbitmq.chaos.toxiproxy_launcher import start_or_connect
    except ImportError:
        if not url:
            raise ClusterError("chaos mode needs a Toxiproxy server: pass toxiproxy_url / --toxiproxy or set "
                               "TOXIPROXY_URL (the embedded one, orbitmq.chaos.toxiproxy_launcher, is missing)") from None
        return url, None, None
    handle = start_or_connect(url=url, log_dir=str(log_dir))
    return str(handle.url), getattr(handle, "pid", None), handle


class ChaosCluster:
    """A running cluster under `root` (see the module docstring)."""

    def __init__(self, root: Path, state: dict[str, Any]) -> None:
        self.root = root
        self.state = state
        self.nodes: dict[str, NodePlan] = {n["name"]: NodePlan.from_json(n) for n in state["nodes"]}
        self.links: list[Link] = [Link.from_json(x) for x in state.get("links", [])]
        tp = state.get("toxiproxy") or {}
        self.proxies = LinkProxies(tp["url"], tp["prefix"], self.links) if tp else None
        self._channels: dict[str, grpc.Channel] = {}
        self._channels_lock = threading.Lock()   # a nemesis and a checker may share one object

    # ---- addresses --------------------------------------------------------------------------------

    @property
    def chaos(self) -> bool:
        return bool(self.state.get("chaos"))

    @property
    def name(self) -> str:
        return str(self.state["cluster"])

    @property
    def namesrv_addrs(self) -> list[str]:
        """What clients use: the client->name server proxies in chaos mode, else the name servers."""
        return list(self.state["client_namesrvs"])

    @property
    def controller_addrs(self) -> list[str]:
        """The controllers' gRPC addresses (direct, for admin reads)."""
        return [n.addr for n in self.nodes.values() if n.kind == "controller"]

    @property
    def client_dial_map(self) -> dict[str, str]:
        """advertised broker / name server address -> client proxy (empty without chaos)."""
        return dict(self.state.get("client_dial_map", {}))

    @property
    def secure(self) -> bool:
        return bool(self.state.get("tls"))

    @property
    def client_tls(self) -> TlsConfig:
        """What clients and tools dial this cluster with (plaintext unless `secure`): the cluster CA, and
        the client certificate made for tools (needed by controllers in mtls mode)."""
        t = self.state.get("tls") or {}
        return TlsConfig(ca_file=t.get("ca_file", ""), cert_file=t.get("cert_file", ""), key_file=t.get("key_file", ""))

    def _make_certs(self, spec: ClusterSpec, nodes: list[NodePlan]) -> dict[str, tuple[str, str]]:
        """Secure clusters: the throwaway CA and a certificate per node (and `client`) under DIR/tls."""
        if not spec.secure:
            self.state["tls"] = None
            return {}
        wanted = {n.name: node_hosts(n) for n in nodes}
        wanted["client"] = [spec.host]
        certs = write_cluster_certs(self.root / "tls", wanted)
        self.state["tls"] = {"ca_file": str(self.root / "tls" / "ca.pem"), "cert_file": certs["client"][0],
                             "key_file": certs["client"][1], "mtls": bool(spec.mtls)}
        return certs

    def node_names(self) -> list[str]:
        return list(self.nodes)

    def node(self, name: str) -> NodePlan:
        if name not in self.nodes:
            raise ClusterError(f"unknown node {name!r}; nodes: {', '.join(self.nodes)}")
        return self.nodes[name]

    def broker_sets(self) -> list[str]:
        return list(dict.fromkeys(n.broker_set for n in self.nodes.values() if n.kind == "broker"))

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    # ---- lifecycle ----------------------------------------------------------------------------------

    @classmethod
    def up(cls, run_dir: str | Path, spec: ClusterSpec | None = None, *, chaos: bool = True,
           toxiproxy_url: str | None = None, ready_timeout: float = 180.0,
           only: list[str] | None = None, fresh: bool = False) -> ChaosCluster:
        """Start every process (or only the nodes in `only`, for a multi-host spec) and wait until
        every broker set has a master with a full sync-state-set and every name server serves its
        route (skipped with `only`).

        A directory that holds a stopped cluster with the same nodes is started again on the same
        addresses with its data (a whole-cluster restart); `fresh` deletes that data first."""
        spec = spec or ClusterSpec()
        root = Path(run_dir).resolve()
        spec.dir = str(root)
        spec.validate()
        if chaos and only:
            raise ClusterError("chaos mode runs the whole cluster on this host (no --only)")
        root.mkdir(parents=True, exist_ok=True)
        old_state = cls._stopped_state(root, fresh)
        ports = iter(range(spec.base_port, 65536)) if spec.base_port else None
        ports = ports or iter(net.free_ports(port_count(spec), spec.host))
        nodes = plan_nodes(spec, ports)
        # proxies listen on port 0: Toxiproxy binds them, `_use_links` takes the bound addresses
        links = plan_links(nodes, itertools.repeat(0), "127.0.0.1") if chaos else []
        if old_state is not None:
            nodes = cls._same_addresses(root, old_state, nodes, chaos)
        state: dict[str, Any] = {
            "version": 1, "cluster": spec.name, "dir": str(root), "chaos": chaos, "host": spec.host,
            "nodes": [n.to_json() for n in nodes], "links": [lk.to_json() for lk in links], "procs": {},
            "toxiproxy": None, "client_dial_map": {}, "started_at": time.time(),
        }
        maps = dial_maps(links)
        state["client_dial_map"] = maps.get(CLIENT, {})
        ns_nodes = [n for n in nodes if n.kind == "namesrv"]
        state["client_namesrvs"] = [state["client_dial_map"].get(n.addr, n.addr) for n in ns_nodes]
        self = cls(root, state)
        try:
            if chaos:
                url, pid, handle = _toxiproxy(toxiproxy_url, root / "logs")
                prefix = "orbit-" + hashlib.sha1(str(root).encode()).hexdigest()[:8] + ":"
                state["toxiproxy"] = {"url": url, "pid": pid, "start_time": procs.start_time(pid) if pid else None,
                                      "prefix": prefix}
                self._toxiproxy_handle = handle
                self.proxies = LinkProxies(url, prefix, links)
                maps = self._use_links(self.proxies.create_all())
            conf = root / "conf"
            conf.mkdir(exist_ok=True)
            # one secret per cluster: a multi-host file names the files every host holds; a local
            # cluster gets new ones under its dir
            secrets = {"raft": spec.raft_secret_file or str(write_secret_file(root / "raft.secret")),
                       "cluster": spec.cluster_secret_file or str(write_secret_file(root / "cluster.secret"))}
            state["cluster_secret_file"] = secrets["cluster"]
            certs = self._make_certs(spec, nodes)
            for n in nodes:
                data = str(root / n.name)
                tls = tls_keys(n, spec, certs[n.name], state["tls"]["ca_file"]) if certs else None
                (conf / f"{n.name}.toml").write_text(
                    f"# {n.name}: written by `orbitmq cluster up`\n" + to_toml(node_config(
                        n, nodes, spec, data, maps.get(n.name, {}), secrets, tls)))
            self._save()
            self._write_env()
            chosen = [n.name for n in nodes] if not only else expand(only, [n.name for n in nodes])
            for kind in ("controller", "namesrv", "broker"):
                for n in nodes:
                    if n.kind == kind and n.name in chosen:
                        self._start_node(n.name)
            for n in nodes:
                if n.name in chosen:
                    net.wait_for_port(n.addr, 60.0)
            if chaos:
                dial_map.install(self.client_dial_map)
            tlsmod.install(self.client_tls if self.secure else None)
            if not only:
                self.wait_ready(ready_timeout, fail_on_exit=True)
        except Exception as e:
            tails = self.logs(15)
            with contextlib.suppress(Exception):
                self.down()
            raise ClusterError(f"cluster up failed: {e}\n{tails}") from e
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        return self

    @staticmethod
    def _stopped_state(root: Path, fresh: bool) -> dict[str, Any] | None:
        """The state of a stopped cluster in `root` (None if none, or wiped because `fresh`)."""
        path = root / STATE
        if not path.exists():
            return None
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        running = [n for n, r in old.get("procs", {}).items() if procs.alive(r.get("pid"), r.get("start_time"))]
        if running:
            raise ClusterError(f"a cluster is already running in {root} ({', '.join(running)}); "
                               "`orbitmq cluster down` first")
        if not fresh and isinstance(old.get("nodes"), list):
            return old
        for n in old.get("nodes", []) if isinstance(old.get("nodes"), list) else []:
            shutil.rmtree(root / n["name"], ignore_errors=True)
        for name in ("conf", "logs"):
            shutil.rmtree(root / name, ignore_errors=True)
        path.unlink()
        return None

    @staticmethod
    def _same_addresses(root: Path, old: dict[str, Any], nodes: list[NodePlan], chaos: bool) -> list[NodePlan]:
        """The new plan on the stopped cluster's addresses (its data knows them; proxies may move)."""
        before = {n["name"]: NodePlan.from_json(n) for n in old["nodes"]}
        if set(before) != {n.name for n in nodes} or bool(old.get("chaos")) != chaos:
            raise ClusterError(f"{root} holds the data of a stopped cluster with other nodes or mode "
                               f"({', '.join(before)}); use another --dir, or --fresh to delete it")
        for n in nodes:
            b = before[n.name]
            n.addr, n.raft_addr, n.ha_addr = b.addr, b.raft_addr, b.ha_addr
        return nodes

    def _use_links(self, links: list[Link]) -> dict[str, dict[str, str]]:
        """Adopt the links with their bound proxy addresses; returns every node's dial map."""
        self.links = links
        self.proxies = LinkProxies(self.proxies.url, self.proxies.prefix, links) if self.proxies else None
        maps = dial_maps(links)
        self.state["links"] = [lk.to_json() for lk in links]
        self.state["client_dial_map"] = maps.get(CLIENT, {})
        self.state["client_namesrvs"] = [self.state["client_dial_map"].get(n.addr, n.addr)
                                         for n in self.nodes.values() if n.kind == "namesrv"]
        return maps

    @classmethod
    def open(cls, run_dir: str | Path) -> ChaosCluster:
        """Attach to the cluster recorded in DIR/cluster.json (installs the client dial map)."""
        root = Path(run_dir).resolve()
        path = root / STATE
        if not path.exists():
            raise ClusterError(f"no cluster in {root} (no {STATE}); start one with `orbitmq cluster up --dir {root}`")
        state = json.loads(path.read_text())
        if "nodes" not in state or not isinstance(state["nodes"], list):
            raise ClusterError(f"{path} was not written by `orbitmq cluster up` (foreground `cluster run`?)")
        self = cls(root, state)
        if self.chaos:
            dial_map.install(self.client_dial_map)
        if self.secure:
            tlsmod.install(self.client_tls)
        return self

    def down(self) -> None:
        """Stop every process by PID (brokers first), delete the proxies, stop our Toxiproxy."""
        self._reload()
        order = {"broker": 0, "namesrv": 1, "controller": 2}
        for name in sorted(self.state["procs"], key=lambda n: order.get(self.nodes[n].kind, 3)):
            rec = self.state["procs"][name]
            procs.stop(rec.get("pid"), rec.get("start_time"), timeout=10.0)
        if self.proxies is not None:
            with contextlib.suppress(Exception):
                self.proxies.delete_all()
        tp = self.state.get("toxiproxy") or {}
        handle = getattr(self, "_toxiproxy_handle", None)
        if handle is not None and tp.get("pid"):
            with contextlib.suppress(Exception):
                handle.stop()
        if tp.get("pid"):
            procs.stop(tp["pid"], tp.get("start_time"), timeout=5.0)
        self.detach()
        self.state["stopped_at"] = time.time()
        self._save()

    def detach(self) -> None:
        """Undo what `open` installed in this process (the client dial map, the default TLS) and
        close this object's channels; the cluster's processes keep running.

        Call it when done with a cluster another process will stop (`orbitmq cluster down`):
        a dial map left behind would send later clients of the same host:port to a dead proxy.
        """
        if self.chaos:
            dial_map.remove(list(self.client_dial_map))
        if self.secure:
            tlsmod.install(None)
        with self._channels_lock:
            chans, self._channels = list(self._channels.values()), {}
        for ch in chans:
            ch.close()

    def _start_node(self, name: str) -> None:
        n = self.node(name)
        argv = proclib.orbitmq_argv(n.kind, "--config", str(self.root / "conf" / f"{name}.toml"))
        pid, started = procs.start(name, argv, self.log_path(name))
        with self._locked():
            self.state["procs"][name] = {"pid": pid, "start_time": started, "argv": argv,
                                         "log": str(self.log_path(name))}

    # ---- state file -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self):
        """Read-modify-write of cluster.json under a file lock (CLI commands may run at once)."""
        lock = open(self.root / ".cluster.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.root / STATE
            if path.exists():
                with contextlib.suppress(ValueError):
                    disk = json.loads(path.read_text())
                    if disk.get("started_at") == self.state.get("started_at"):
                        self.state["procs"].update(disk.get("procs", {}))
            yield
            self._save()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def _reload(self) -> None:
        path = self.root / STATE
        with contextlib.suppress(OSError, ValueError):
            disk = json.loads(path.read_text())
            if disk.get("started_at") == self.state.get("started_at"):
                self.state["procs"] = disk.get("procs", self.state["procs"])

    def _save(self) -> None:
        path = self.root / STATE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        os.replace(tmp, path)

    def _write_env(self) -> None:
        """DIR/cluster.env: `. DIR/cluster.env` points `orbitmq admin|produce|consume` at this cluster."""
        lines = [f"export ORBITMQ_NAMESRV={','.join(self.namesrv_addrs)}",
                 f"export ORBITMQ_CONTROLLERS={','.join(self.controller_addrs)}"]
        secret = self.state.get("cluster_secret_file")
        if secret:   # admin writes (elect, clean) are signed with it
            lines.append(f"export ORBITMQ_CLUSTER_SECRET_FILE={secret}")
        if self.client_dial_map:
            lines.append(f"export {dial_map.ENV}={dial_map.format_map(self.client_dial_map)}")
        lines += tlsmod.env_lines(self.client_tls)   # secure: the CA (and tools' certificate) to dial with
        (self.root / ENV_FILE).write_text("\n".join(lines) + "\n")

    # ---- process faults -------------------------------------------------------------------------------

    def _rec(self, name: str) -> dict[str, Any]:
        self.node(name)
        self._reload()
        rec = self.state["procs"].get(name)
        if rec is None:
            raise ClusterError(f"{name} was never started here")
        return rec

    def alive(self, name: str) -> bool:
        rec = self._rec(name)
        return procs.alive(rec.get("pid"), rec.get("start_time"))

    def pid(self, name: str) -> int | None:
        return self._rec(name).get("pid")

    def kill(self, node: str) -> None:
        """SIGKILL (the process and its group); returns once it is gone."""
        rec = self._rec(node)
        procs.kill9(rec.get("pid"), rec.get("start_time"))

    def pause(self, node: str) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing (a GC pause, a stalled VM)."""
        rec = self._rec(node)
        if not procs.send(rec.get("pid"), rec.get("start_time"), signal.SIGSTOP):
            raise ClusterError(f"{node} is not running")

    def resume(self, node: str) -> None:
        """SIGCONT after `pause`."""
        rec = self._rec(node)
        if not procs.send(rec.get("pid"), rec.get("start_time"), signal.SIGCONT):
            raise ClusterError(f"{node} is not running")

    def restart(self, node: str, *, wipe: bool = False) -> None:
        """Stop (SIGTERM, SIGKILL if it hangs; nothing if already dead) and start again with the
        same config; its data directory is kept unless `wipe`.

        A wiped broker is a new, empty replica: its old id is first removed from the controllers
        (`CleanBrokerData`, after a failover if it was the master), as an operator would, so it
        registers again under its configured id and copies everything from the master."""
        rec = self._rec(node)
        procs.stop(rec.get("pid"), rec.get("start_time"), timeout=10.0)
        if wipe:
            shutil.rmtree(self.root / node, ignore_errors=True)
            if self.node(node).kind == "broker":
                self._forget_broker(node)
        self._start_node(node)
        net.wait_for_port(self.node(node).addr, 60.0)

    def _forget_broker(self, node: str, timeout: float = 60.0) -> None:
        n = self.node(node)

        def cleaned() -> bool:
            v = self._views().get(n.broker_set)
            ids = [r.broker_id for r in v.replicas if r.address == n.addr] if v is not None else []
            if not ids:
                return True
            if v.master_id in ids:
                return False    # stopped master: wait for the failover first
            r = self._leader_call("CleanBrokerData", cpb.CtlCleanBrokerDataRequest(
                cluster=self.name, broker_set=n.broker_set, broker_ids=ids))
            return bool(r.result.ok)

        proclib.wait_until(cleaned, timeout, 0.5, f"the controllers to forget {node}'s old identity")

    # ---- network faults -------------------------------------------------------------------------------

    def _links(self) -> LinkProxies:
        if self.proxies is None:
            raise ClusterError("network faults need a chaos cluster (`cluster up --chaos`)")
        return self.proxies

    def _names(self, names: list[str]) -> list[str]:
        return expand(names, [*self.nodes, CLIENT])

    def partition(self, a: list[str], b: list[str], *, one_way: bool = False) -> None:
        """Black-hole every byte from `a` to `b` (and `b` to `a` unless `one_way`), on open
        connections and new ones. Names: nodes, `client`, a broker set, `controllers`, `namesrvs`."""
        streams = cut_streams(self.links, self._names(a), self._names(b), one_way=one_way)
        self._links().cut(streams)

    def isolate(self, node: str) -> None:
        """Partition `node` from every other node and the client."""
        others = [n for n in [*self.nodes, CLIENT] if n != node]
        self.partition([node], others)

    def slow_link(self, src: str, dst: str, *, latency_ms: int, jitter_ms: int = 0, rate_kbps: int = 0) -> None:
        """Delay bytes from `src` to `dst` by latency_ms +- jitter_ms; `rate_kbps` > 0 also limits them
        to that many KB/s (Toxiproxy's bandwidth unit, 1000 bytes/s)."""
        streams = directed_streams(self.links, *self._names([src, dst])[:2])
        self._links().slow(streams, latency_ms, jitter_ms, rate_kbps)

    def flap_link(self, src: str, dst: str) -> None:
        """Reset (RST) every connection carrying bytes from `src` to `dst` as soon as they flow."""
        streams = directed_streams(self.links, *self._names([src, dst])[:2])
        self._links().flap(streams)

    def heal(self) -> None:
        """Remove every network fault (all toxics of our proxies; disabled proxies enabled)."""
        self._links().heal()

    def faults(self) -> dict[str, list[str]]:
        """Links with a fault -> their toxic names (empty without chaos)."""
        return self.proxies.faults() if self.proxies is not None else {}

    # ---- observation (direct, never through a proxy) ---------------------------------------------------

    def _channel(self, addr: str) -> grpc.Channel:
        with self._channels_lock:
            ch = self._channels.get(addr)
            if ch is None:
                # admin writes (CleanBrokerData) are signed with the cluster secret, as an operator's are
                secret_file = self.state.get("cluster_secret_file")
                secret = load_secret(secret_file or "")
                ch = self._channels[addr] = signed_channel(tls_channel(addr, self.client_tls), secret)
            return ch

    def _metadata(self, name: str, timeout: float = 1.0) -> cpb.CtlGetMetadataReply | None:
        try:
            return cpbg.ControllerStub(self._channel(self.nodes[name].addr)).GetMetadata(
                cpb.CtlGetMetadataRequest(), timeout=timeout)
        except grpc.RpcError:
            return None

    def controller_leader(self) -> str | None:
        """The controller that says it leads, with the highest term (None: no leader now)."""
        best: tuple[int, str] | None = None
        for n in self.nodes.values():
            if n.kind != "controller":
                continue
            md = self._metadata(n.name)
            if md is not None and md.leader_raft_address and md.leader_raft_address == md.self_raft_address:
                if best is None or md.term > best[0]:
                    best = (md.term, n.name)
        return best[1] if best else None

    def controller_metadata(self, name: str) -> dict[str, Any] | None:
        """What one controller says about Raft: leader, term, commit index, connected peers."""
        md = self._metadata(name)
        if md is None:
            return None
        by_raft = {n.raft_addr: n.name for n in self.nodes.values() if n.kind == "controller"}
        return {"leader": by_raft.get(md.leader_raft_address), "term": md.term, "commit_index": md.commit_index,
                "last_applied": md.last_applied, "liveness_ready": md.liveness_ready,
                "connected": sorted(by_raft.get(p.raft_address, p.raft_address) for p in md.peers
                                    if p.connected and p.raft_address != md.self_raft_address),
                "sets": sorted(f"{k.cluster}/{k.broker_set}" for k in md.sets)}

    def _leader_call(self, method: str, request: Any, timeout: float = 2.0) -> Any:
        """`method` on the controller leader. While an election is under way (a controller answers
        "not the leader", as after a rolling restart moved the leadership) it tries again for up to
        LEADER_WAIT_S; with every controller unreachable it gives up at once."""
        deadline = time.monotonic() + LEADER_WAIT_S
        while True:
            leader = self.controller_leader()
            order = ([leader] if leader else []) + [n for n, p in self.nodes.items()
                                                    if p.kind == "controller" and n != leader]
            last: Exception | None = None
            electing = False
            for name in order:
                try:
                    return getattr(cpbg.ControllerStub(self._channel(self.nodes[name].addr)), method)(
                        request, timeout=timeout)
                except grpc.RpcError as e:
                    last = e
                    electing = electing or e.code() == grpc.StatusCode.FAILED_PRECONDITION
            if not electing or time.monotonic() >= deadline:
                raise ClusterError(f"no controller leader answered {method}: {last}")
            time.sleep(0.2)

    def _broker_name(self, broker_set: str, broker_id: int, addr: str = "") -> str | None:
        for n in self.nodes.values():
            if n.kind == "broker" and n.broker_set == broker_set and (n.addr == addr or (not addr and n.broker_id == broker_id)):
                return n.name
        return None

    def _views(self) -> dict[str, cpb.CtlSetView]:
        reply = self._leader_call("GetSyncStateData", cpb.CtlGetSyncStateDataRequest(
            sets=[cpb.CtlSetKey(cluster=self.name, broker_set=s) for s in self.broker_sets()]))
        return {v.broker_set: v for v in reply.sets if v.exists}

    def status(self) -> dict[str, Any]:
        """{"controller_leader": name|None, "sets": {set: {"master", "epoch", "sss", "learners", "lag",
        "alive"}}, "processes": {name: running?}, "faults": {link: [toxics]}} from the controller leader."""
        out: dict[str, Any] = {"controller_leader": self.controller_leader(), "sets": {},
                               "processes": {n: self.alive(n) for n in self.nodes if n in self.state["procs"]}}
        try:
            views = self._views()
        except ClusterError:
            views = {}
        for bset in self.broker_sets():
            v = views.get(bset)
            entry: dict[str, Any] = {"master": None, "epoch": 0, "sss": [], "learners": self.learners_of(bset),
                                     "lag": {}, "alive": []}
            if v is not None:
                ids = {r.broker_id: self._broker_name(bset, r.broker_id, r.address) for r in v.replicas}
                entry["master"] = ids.get(v.master_id) if v.master_id else None
                entry["epoch"] = int(v.master_epoch)
                entry["sss"] = sorted(ids[i] or str(i) for i in v.sync_state_set if i in ids)
                master_off = next((r.max_offset for r in v.replicas if r.broker_id == v.master_id), None)
                for r in v.replicas:
                    name = ids[r.broker_id] or str(r.broker_id)
                    if r.alive:
                        entry["alive"].append(name)
                    if master_off is not None and r.broker_id != v.master_id:
                        entry["lag"][name] = max(0, int(master_off - r.max_offset))
            out["sets"][bset] = entry
        with contextlib.suppress(Exception):
            out["faults"] = self.faults()
        return out

    def master_of(self, broker_set: str) -> str | None:
        """The master the controller leader names for `broker_set` (None: none, or no leader)."""
        try:
            v = self._views().get(broker_set)
        except ClusterError:
            return None
        if v is None or not v.master_id:
            return None
        return self._broker_name(broker_set, v.master_id, v.master_address) or \
            self._broker_name(broker_set, v.master_id)

    def followers_of(self, broker_set: str) -> list[str]:
        m = self.master_of(broker_set)
        return [n.name for n in self.nodes.values()
                if n.kind == "broker" and n.broker_set == broker_set and not n.learner and n.name != m]

    def learners_of(self, broker_set: str) -> list[str]:
        return [n.name for n in self.nodes.values() if n.kind == "broker" and n.broker_set == broker_set and n.learner]

    def broker_status(self, name: str, timeout: float = 1.0) -> broker_pb2.BrokerStatus | None:
        """A broker's own view (role, epoch, offsets), asked directly; None if it does not answer."""
        try:
            return broker_pb2_grpc.BrokerStub(self._channel(self.node(name).addr)).GetBrokerStatus(
                broker_pb2.GetBrokerStatusRequest(), timeout=timeout)
        except grpc.RpcError:
            return None

    def controller_history(self) -> list[dict[str, Any]]:
        """Every master change the controllers recorded, oldest first."""
        reply = self._leader_call("GetHistory", cpb.CtlGetHistoryRequest(cluster=self.name))
        names: dict[tuple[str, int], str | None] = {}
        with contextlib.suppress(ClusterError):
            for bset, v in self._views().items():
                names.update({(bset, r.broker_id): self._broker_name(bset, r.broker_id, r.address) for r in v.replicas})
        return [{"broker_set": c.broker_set, "epoch": int(c.master_epoch), "master_id": int(c.master_id),
                 "master": names.get((c.broker_set, c.master_id)) if c.master_id else None,
                 "old_master_id": int(c.old_master_id), "reason": c.reason, "time_ms": int(c.time_ms),
                 "sss": list(c.sync_state_set)} for c in reply.changes]

    def routes_served(self, via_client: bool = True) -> bool:
        """True if every name server (through the client links, in chaos mode) lists every broker set
        of this cluster with a master."""
        addrs = self.namesrv_addrs if via_client else [n.addr for n in self.nodes.values() if n.kind == "namesrv"]
        for addr in addrs:
            try:
                info = namesrv_pb2_grpc.NameServerStub(self._channel(addr)).GetClusterInfo(
                    namesrv_pb2.GetClusterInfoRequest(), timeout=2.0)
            except grpc.RpcError:
                return False
            sets = {s.broker_set: s for s in info.clusters[self.name].broker_sets} if self.name in info.clusters else {}
            if any(b not in sets or sets[b].master_id < 0 for b in self.broker_sets()):
                return False
        return True

    def ready(self) -> bool:
        """Every broker set has a master whose sync-state-set holds all its replicas, and routes are served."""
        views = self._views()
        for bset in self.broker_sets():
            v = views.get(bset)
            replicas = [n for n in self.nodes.values() if n.kind == "broker" and n.broker_set == bset and not n.learner]
            if v is None or not v.master_id or len(v.sync_state_set) < len(replicas):
                return False
            m = self.master_of(bset)
            st = self.broker_status(m) if m else None
            if st is None or st.role != "MASTER":
                return False
        return self.routes_served()

    def wait_ready(self, timeout: float = 180.0, *, fail_on_exit: bool = False) -> None:
        """Wait for `ready()`; with `fail_on_exit`, fail at once if a started process has exited."""
        def check() -> bool:
            dead = [n for n, r in self.state["procs"].items() if not procs.alive(r.get("pid"), r.get("start_time"))]
            if dead and fail_on_exit:
                raise ProcessExited(f"exited: {', '.join(dead)}; see {self.root / 'logs'}")
            return self.ready()

        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except ProcessExited:
                raise
            except Exception:  # noqa: BLE001 - no leader yet, a process still starting
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for every broker set to have a master "
                                   "with a full sync-state-set and routes served")
            time.sleep(0.3)

    def wait_master(self, broker_set: str, timeout: float = 60.0, not_in: tuple[str, ...] = ()) -> str:
        """Wait until the controllers name a master of `broker_set` outside `not_in`, which says it is master."""
        def check() -> str | None:
            m = self.master_of(broker_set)
            if m is None or m in not_in:
                return None
            st = self.broker_status(m)
            return m if st is not None and st.role == "MASTER" else None

        return proclib.wait_until(check, timeout, 0.2, f"a master of {broker_set} other than {list(not_in)}")

    # ---- reporting ----------------------------------------------------------------------------------

    def endpoints(self) -> list[str]:
        """One line per process (and the client view), for `cluster up`."""
        lines = [f"cluster {self.name} in {self.root} ({'chaos: every link through Toxiproxy at ' + self.proxies.url if self.proxies else 'direct links'})"]
        for n in self.nodes.values():
            extra = f" raft {n.raft_addr}" if n.raft_addr else (f" ha {n.ha_addr}" if n.ha_addr else "")
            kind = "learner" if n.learner else n.kind
            pid = self.state["procs"].get(n.name, {}).get("pid")
            lines.append(f"  {n.name:<12} {kind:<10} {n.addr:<16}{extra:<22} pid {pid}")
        lines.append(f"  clients use name servers {','.join(self.namesrv_addrs)}"
                     + (" (client links; dial map in cluster.env)" if self.chaos else ""))
        t = self.state.get("tls")
        if t:
            lines.append(f"  TLS on every gRPC port and replication stream; CA {t['ca_file']}"
                         + ("; controllers and replication require client certificates (mTLS)" if t.get("mtls") else ""))
        else:
            lines.append("  plaintext (no TLS; `up --secure` for TLS)")
        lines.append(f"  admin: . {self.root / ENV_FILE}; orbitmq admin cluster list")
        return lines

    def logs(self, n: int = 40) -> str:
        out = []
        for name in self.state.get("procs", {}):
            p = self.log_path(name)
            if p.exists():
                tail = p.read_text(errors="replace").splitlines()[-n:]
                out.append(f"--- {name} ---\n" + "\n".join(tail))
        return "\n".join(out)
