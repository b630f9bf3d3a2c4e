"""Network faults on the chaos cluster's link proxies, through toxiproxy-python only (so the
embedded server and a real `toxiproxy-server` behave the same).

Owns: creating one proxy per directed link, and the named toxics that cut, slow or flap a
stream of a link: a cut is a `timeout` toxic with timeout 0 (a black hole: bytes vanish, the
connection stays open, new connections are accepted and go nowhere, like a real partition, so
failure detection runs on timeouts); a flap is `reset_peer` (connections reset at their first
bytes); a slow link is `latency` (+ `bandwidth`). Toxic names are fixed per kind and stream,
so applying the same fault twice is harmless; `heal` deletes every toxic on our proxies and
re-enables any disabled proxy (removing a timeout toxic closes the connections it held, so
nothing resumes mid-stream after bytes were dropped).
"""

from __future__ import annotations

from collections.abc import Iterable

from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound, ProxyExists
from toxiproxy.proxy import Proxy

from orbitmq.chaos.topology import Link
from orbitmq.common.net import split_addr


class LinkProxies:
    """The proxies of one cluster on one Toxiproxy server (API at `url`); names are `prefix + link`."""

    def __init__(self, url: str, prefix: str, links: Iterable[Link]) -> None:
        self.url = url.rstrip("/")
        self.prefix = prefix
        self.links = {lk.name: lk for lk in links}

    def _point(self) -> None:
        # toxiproxy-python keeps the server address in class attributes: set it before each use
        hostport = self.url.split("://", 1)[-1]
        host, port = split_addr(hostport)
        APIConsumer.host, APIConsumer.port = host, port

    def _proxy(self, link_name: str) -> Proxy:
        lk = self.links[link_name]
        return Proxy(name=self.prefix + lk.name, upstream=lk.upstream, listen=lk.listen, enabled=True)

    def create_all(self) -> list[Link]:
        """Create every link's proxy (replacing a same-named one left from an earlier run); returns
        the links with the addresses the proxies listen on (a `:0` listen gets a free port)."""
        self._point()
        existing = set(APIConsumer.get("/proxies").json())
        for lk in self.links.values():
            name = self.prefix + lk.name
            if name in existing:
                APIConsumer.delete(f"/proxies/{name}")
            APIConsumer.post("/proxies", json={"name": name, "upstream": lk.upstream, "listen": lk.listen,
                                               "enabled": True})
        got = APIConsumer.get("/proxies").json()
        missing = [lk.name for lk in self.links.values() if self.prefix + lk.name not in got]
        if missing:
            raise RuntimeError(f"toxiproxy at {self.url} did not create proxies {missing}")
        return [Link(lk.src, lk.dst, lk.kind, lk.upstream, got[self.prefix + lk.name]["listen"])
                for lk in self.links.values()]

    def delete_all(self) -> None:
        self._point()
        for name in list(APIConsumer.get("/proxies").json()):
            if name.startswith(self.prefix):
                try:
                    APIConsumer.delete(f"/proxies/{name}")
                except NotFound:
                    pass

    def add_toxic(self, link_name: str, stream: str, kind: str, toxic_type: str, attributes: dict) -> None:
        """Add toxic `<kind>_<stream>` to one link; an existing one of that name is replaced."""
        self._point()
        p = self._proxy(link_name)
        name = f"{kind}_{stream}"
        try:
            p.add_toxic(name=name, type=toxic_type, stream=stream, attributes=attributes)
        except ProxyExists:
            p.destroy_toxic(name)
            p.add_toxic(name=name, type=toxic_type, stream=stream, attributes=attributes)

    def cut(self, streams: Iterable[tuple[str, str]]) -> None:
        for link_name, stream in streams:
            self.add_toxic(link_name, stream, "cut", "timeout", {"timeout": 0})

    def slow(self, streams: Iterable[tuple[str, str]], latency_ms: int, jitter_ms: int = 0, rate_kbps: int = 0) -> None:
        for link_name, stream in streams:
            self.add_toxic(link_name, stream, "slow", "latency", {"latency": int(latency_ms), "jitter": int(jitter_ms)})
            if rate_kbps > 0:
                self.add_toxic(link_name, stream, "rate", "bandwidth", {"rate": int(rate_kbps)})

    def flap(self, streams: Iterable[tuple[str, str]]) -> None:
        for link_name, stream in streams:
            self.add_toxic(link_name, stream, "flap", "reset_peer", {"timeout": 0})

    def faults(self) -> dict[str, list[str]]:
        """Link name -> its toxic names (and "disabled" for a disabled proxy), faulty links only."""
        self._point()
        out: dict[str, list[str]] = {}
        for name, p in APIConsumer.get("/proxies").json().items():
            if not name.startswith(self.prefix):
                continue
            items = [t["name"] for t in p.get("toxics") or []]
            if not p.get("enabled", True):
                items.append("disabled")
            if items:
                out[name[len(self.prefix):]] = items
        return out

    def heal(self) -> None:
        """Remove every toxic from our proxies and enable any disabled one."""
        self._point()
        for name, p in APIConsumer.get("/proxies").json().items():
            if not name.startswith(self.prefix):
                continue
            for t in APIConsumer.get(f"/proxies/{name}/toxics").json():
                try:
                    APIConsumer.delete(f"/proxies/{name}/toxics/{t['name']}")
                except NotFound:
                    pass
            if not p.get("enabled", True):
                APIConsumer.post(f"/proxies/{name}", json={"enabled": True})
