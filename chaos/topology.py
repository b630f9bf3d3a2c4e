"""The chaos cluster's plan, a pure core: which nodes exist with which addresses, which directed
links they use, the proxy of each link, every node's dial map, and which proxy streams a
partition cuts. No sockets, processes or clocks.

Node names: controllers `c1..cN`, name servers `n1..nN`, broker replicas `<set>-<i>` (learners
last), and the pseudo-node `client` (producers, consumers, admin tools).

Links (one proxy per directed link `src->dst`; the proxy carries the connections *opened by*
src, so src's bytes go `upstream` and dst's replies `downstream`):
  client -> every broker (gRPC) and every name server;  broker -> every name server and every
  controller (gRPC); broker -> every other non-learner replica of its set (HA, follower ->
  master); controller -> every other controller (Raft).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

CLIENT = "client"
UP, DOWN = "upstream", "downstream"


@dataclass
class NodePlan:
    """One process: its name, kind and the addresses it listens on (advertised as they are)."""

    name: str
    kind: str                     # controller | namesrv | broker
    addr: str                     # gRPC listen address
    raft_addr: str = ""           # controllers
    ha_addr: str = ""             # brokers
    broker_set: str = ""
    broker_id: int = 0
    learner: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "kind", "addr", "raft_addr", "ha_addr", "broker_set",
                                             "broker_id", "learner", "settings")}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodePlan:
        return cls(**{k: d[k] for k in ("name", "kind", "addr", "raft_addr", "ha_addr", "broker_set", "broker_id",
                                        "learner", "settings") if k in d})


@dataclass(frozen=True)
class Link:
    """A directed link: `src` dials `upstream` (dst's real address) through the proxy at `listen`."""

    src: str
    dst: str
    kind: str                     # grpc | ha | raft
    upstream: str
    listen: str

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"

    def to_json(self) -> dict[str, str]:
        return {"src": self.src, "dst": self.dst, "kind": self.kind, "upstream": self.upstream, "listen": self.listen}

    @classmethod
    def from_json(cls, d: dict[str, str]) -> Link:
        return cls(d["src"], d["dst"], d["kind"], d["upstream"], d["listen"])


def plan_links(nodes: Iterable[NodePlan], ports: Iterator[int], host: str = "127.0.0.1") -> list[Link]:
    """Every directed link of the cluster, each with a proxy listen address from `ports`."""
    nodes = list(nodes)
    ctl = [n for n in nodes if n.kind == "controller"]
    ns = [n for n in nodes if n.kind == "namesrv"]
    brokers = [n for n in nodes if n.kind == "broker"]
    links: list[Link] = []

    def add(src: str, dst: str, kind: str, upstream: str) -> None:
        links.append(Link(src, dst, kind, upstream, f"{host}:{next(ports)}"))

    for b in brokers:
        add(CLIENT, b.name, "grpc", b.addr)
    for n in ns:
        add(CLIENT, n.name, "grpc", n.addr)
    for b in brokers:
        for n in ns:
            add(b.name, n.name, "grpc", n.addr)
        for c in ctl:
            add(b.name, c.name, "grpc", c.addr)
        for peer in brokers:
            if peer.broker_set == b.broker_set and peer.name != b.name and not peer.learner:
                add(b.name, peer.name, "ha", peer.ha_addr)
    for c in ctl:
        for peer in ctl:
            if peer.name != c.name:
                add(c.name, peer.name, "raft", peer.raft_addr)
    return links


def link_count(nodes: Iterable[NodePlan]) -> int:
    """How many links `plan_links` makes (to reserve ports)."""
    return len(plan_links(nodes, iter(range(1, 1 << 30))))


def dial_maps(links: Iterable[Link]) -> dict[str, dict[str, str]]:
    """Per source node: advertised address of each peer -> its proxy for that link."""
    out: dict[str, dict[str, str]] = {}
    for link in links:
        out.setdefault(link.src, {})[link.upstream] = link.listen
    return out


def cut_streams(links: Iterable[Link], a: Iterable[str], b: Iterable[str], *,
                one_way: bool = False) -> list[tuple[str, str]]:
    """The (link name, stream) pairs that stop bytes from every node in `a` to every node in `b`
    (and from `b` to `a` unless `one_way`).

    Bytes from x to y travel upstream on link x->y (x's requests) and downstream on y->x (x's
    replies on connections y opened), so a one-way cut is exact whichever side dials."""
    a, b = set(a), set(b)
    if a & b:
        raise ValueError(f"a node cannot be on both sides of a partition: {sorted(a & b)}")
    by_name = {(lk.src, lk.dst): lk for lk in links}
    out: list[tuple[str, str]] = []

    def cut(src: str, dst: str) -> None:
        if (src, dst) in by_name:
            out.append((by_name[(src, dst)].name, UP))
        if (dst, src) in by_name:
            out.append((by_name[(dst, src)].name, DOWN))

    for x in sorted(a):
        for y in sorted(b):
            cut(x, y)
            if not one_way:
                cut(y, x)
    return out


def directed_streams(links: Iterable[Link], src: str, dst: str) -> list[tuple[str, str]]:
    """The streams that carry bytes from `src` to `dst` (for slow or flapping links)."""
    return cut_streams(links, [src], [dst], one_way=True)


def expand(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """Node names from user input: exact names, or a broker set's name for all its replicas,
    or `controllers` / `namesrvs` / `brokers`; raises ValueError for unknown names."""
    known = list(known)
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name in known:
            hits = [name]
        elif name == "controllers":
            hits = [k for k in known if k[:1] == "c" and k[1:].isdigit()]
        elif name == "namesrvs":
            hits = [k for k in known if k[:1] == "n" and k[1:].isdigit()]
        else:
            hits = [k for k in known if k.rsplit("-", 1)[0] == name or (name == "brokers" and "-" in k)]
        if not hits:
            raise ValueError(f"unknown node {name!r}; known: {', '.join(known)}")
        out.extend(h for h in hits if h not in out)
    return out
