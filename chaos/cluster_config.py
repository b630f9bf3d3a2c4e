"""From a `ClusterSpec` to the processes of a cluster: node names and addresses, and each
process's own config file (TOML), dial map included. Pure: ports come in as an iterator, files
are returned as text.

A node's addresses are its spec override (`[cluster.nodes.NAME]`: listen, raft_addr,
ha_listen) or the next port on `spec.host`; so the same spec file with fixed addresses
describes a multi-host deployment, one process per host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from orbitmq.chaos.topology import NodePlan
from orbitmq.common.local_cluster import ClusterSpec


def node_names(spec: ClusterSpec) -> list[str]:
    names = [f"c{i}" for i in range(1, spec.controllers + 1)] + [f"n{i}" for i in range(1, spec.namesrvs + 1)]
    for bset in spec.broker_sets:
        replicas, learners = spec.set_shape(bset)
        names += [f"{bset}-{i}" for i in range(1, replicas + learners + 1)]
    return names


def port_count(spec: ClusterSpec) -> int:
    """Ports `plan_nodes` may take: gRPC + Raft per controller, gRPC per name server, gRPC + HA per broker."""
    return 2 * spec.controllers + spec.namesrvs + 2 * (len(node_names(spec)) - spec.controllers - spec.namesrvs)


def plan_nodes(spec: ClusterSpec, ports: Iterator[int]) -> list[NodePlan]:
    """Every process of the spec (controllers, name servers, brokers), addresses assigned."""
    if spec.controllers_in_namesrv:
        raise ValueError("the chaos cluster runs standalone controllers (controllers_in_namesrv = false)")
    unknown = set(spec.nodes) - set(node_names(spec))
    if unknown:
        raise ValueError(f"nodes: unknown node(s) {sorted(unknown)}; nodes are {', '.join(node_names(spec))}")

    def addr(name: str, key: str) -> str:
        fixed = spec.nodes.get(name, {}).get(key)
        return str(fixed) if fixed else f"{spec.host}:{next(ports)}"

    def settings(name: str) -> dict[str, Any]:
        return dict(spec.nodes.get(name, {}).get("settings", {}))

    out: list[NodePlan] = []
    for i in range(1, spec.controllers + 1):
        n = f"c{i}"
        out.append(NodePlan(n, "controller", addr(n, "listen"), raft_addr=addr(n, "raft_addr"),
                            settings={**spec.controller_settings, **settings(n)}))
    for i in range(1, spec.namesrvs + 1):
        n = f"n{i}"
        out.append(NodePlan(n, "namesrv", addr(n, "listen"), settings=settings(n)))
    for bset in spec.broker_sets:
        replicas, learners = spec.set_shape(bset)
        set_settings = dict(spec.sets.get(bset, {}).get("settings", {}))
        for i in range(1, replicas + learners + 1):
            n = f"{bset}-{i}"
            out.append(NodePlan(n, "broker", addr(n, "listen"), ha_addr=addr(n, "ha_listen"), broker_set=bset,
                                broker_id=i, learner=i > replicas,
                                settings={**spec.broker_settings, **set_settings, **settings(n)}))
    return out


def node_hosts(node: NodePlan) -> list[str]:
    """The hosts a node's certificate must name: those of every address it listens on."""
    from orbitmq.common.net import split_addr

    return list(dict.fromkeys(split_addr(a)[0] for a in (node.addr, node.raft_addr, node.ha_addr) if a))


def tls_keys(node: NodePlan, spec: ClusterSpec, cert: tuple[str, str], ca_file: str) -> dict[str, Any]:
    """A node's tls_* config keys in a secure cluster (`spec.secure`): its certificate, the CA, and with
    `spec.mtls` client certificates required on node-only ports (controllers, replication)."""
    cfg: dict[str, Any] = {"tls_cert_file": cert[0], "tls_key_file": cert[1], "tls_ca_file": ca_file}
    if spec.mtls and node.kind == "controller":
        cfg["tls_client_auth"] = True
    if spec.mtls and node.kind == "broker":
        cfg["ha_tls_client_auth"] = True
    return cfg


def node_config(node: NodePlan, nodes: list[NodePlan], spec: ClusterSpec, data_dir: str,
                dial: dict[str, str], secrets: dict[str, str] | None = None,
                tls: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config file content of one process (the dial map as its `dial_map` table). `secrets`:
    paths of the shared secret files, {"raft": ..., "cluster": ...} (controllers' Raft links; brokers
    signing their registrations, which the name servers then require along with the controllers'
    word on every master claim). `tls`: the node's tls_* keys (`tls_keys`), none for plaintext."""
    secrets = secrets or {}
    ctl = [n for n in nodes if n.kind == "controller"]
    if node.kind == "controller":
        cfg: dict[str, Any] = {"node_id": node.name, "listen": node.addr, "raft_addr": node.raft_addr,
                               "peers": [c.raft_addr for c in ctl if c.name != node.name], "data_dir": data_dir}
        if "raft" in secrets:
            cfg["raft_secret_file"] = secrets["raft"]
        if "cluster" in secrets:
            cfg["cluster_secret_file"] = secrets["cluster"]
    elif node.kind == "namesrv":
        cfg = {"listen": node.addr}
        if "cluster" in secrets:
            cfg.update(cluster_secret_file=secrets["cluster"], controllers=[c.addr for c in ctl])
    else:
        cfg = {"listen": node.addr, "namesrv": [n.addr for n in nodes if n.kind == "namesrv"],
               "store_dir": data_dir, "cluster": spec.name, "broker_set": node.broker_set,
               "broker_id": node.broker_id, "ha_mode": "controller", "ha_listen": node.ha_addr,
               "ha_address": node.ha_addr, "controllers": [c.addr for c in ctl], "ha_learner": node.learner}
        if "cluster" in secrets:
            cfg["cluster_secret_file"] = secrets["cluster"]
    cfg.update(tls or {})
    cfg.update(node.settings)
    if dial:
        cfg["dial_map"] = dict(dial)
    return cfg


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise ValueError(f"cannot write {v!r} to TOML")


def to_toml(cfg: dict[str, Any]) -> str:
    """Top-level keys, then one `[table]` per dict value (tables hold scalars and lists)."""
    lines = [f"{k} = {_value(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines += [f"{_value(str(kk))} = {_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"
