"""Get a Toxiproxy API to drive: connect to a real toxiproxy-server, or start the embedded one.

`start_or_connect(url)`: with `url` (or env TOXIPROXY_URL) it only checks that /version answers and
starts nothing; otherwise it starts `orbitmq toxiproxy` as a child process on a free loopback port
and waits for /version. The returned `ToxiproxyHandle` gives the address, a `toxiproxy-python`
client pointed at it, `populate()` and `update_toxic()` (which that client lacks), and `stop()`,
which stops only what it started.

toxiproxy-python keeps its server address in class attributes (`toxiproxy.api.APIConsumer.host`
and `.port`, default 127.0.0.1:8474) shared by the whole process: `handle.client` points them at
this handle on every access, so use `handle.client` (not an old `Toxiproxy()`) when a process
talks to more than one server.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer

from orbitmq.common import net, proc

ENV_URL = "TOXIPROXY_URL"
START_TIMEOUT_S = 30.0


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP proxy


def parse_url(url: str) -> tuple[str, int]:
    """'http://127.0.0.1:8474' (or '127.0.0.1:8474') -> ('127.0.0.1', 8474)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"Toxiproxy URL must be http://host:port, got {url!r}")
    return parts.hostname, parts.port or 8474


def version_of(host: str, port: int, timeout: float = 2.0) -> str | None:
    """The server's /version body, or None if nothing answers there."""
    try:
        with _DIRECT.open(f"http://{host}:{port}/version", timeout=timeout) as r:
            return r.read().decode(errors="replace").strip()
    except (OSError, urllib.error.URLError):
        return None


@dataclass
class ToxiproxyHandle:
    """A Toxiproxy API endpoint. `pid` is None when it is an external server we did not start."""

    host: str
    port: int
    child: proc.Child | None = None
    log_path: Path | None = None
    _client: Toxiproxy = field(default_factory=Toxiproxy, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    @property
    def external(self) -> bool:
        return self.child is None

    @property
    def client(self) -> Toxiproxy:
        """toxiproxy-python client for this server (re-points the library's shared address)."""
        APIConsumer.host, APIConsumer.port = self.host, self.port
        return self._client

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One raw API call (JSON body in and out): (status, decoded body or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with _DIRECT.open(req, timeout=60) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw.strip() else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def populate(self, proxies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /populate (server side: identical proxies are kept with their toxics, changed ones
        replaced). Returns the proxies; raises RuntimeError with the server's error otherwise."""
        status, body = self.request("POST", "/populate", proxies)
        if status != 201:
            raise RuntimeError(f"populate failed ({status}): {body}")
        return body["proxies"] or []

    def update_toxic(self, proxy: str, toxic: str, *, attributes: dict[str, int] | None = None,
                     toxicity: float | None = None) -> dict[str, Any]:
        """PATCH a toxic (attributes are merged); toxiproxy-python has no call for this."""
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = attributes
        if toxicity is not None:
            body["toxicity"] = toxicity
        status, out = self.request("PATCH", f"/proxies/{proxy}/toxics/{toxic}", body)
        if status != 200:
            raise RuntimeError(f"updating toxic {toxic} of {proxy} failed ({status}): {out}")
        return out

    def alive(self) -> bool:
        return version_of(self.host, self.port) is not None

    def stop(self) -> None:
        """Stop the embedded server if this handle started it (SIGTERM, then SIGKILL); else nothing."""
        if self.child is not None:
            self.child.stop(timeout=10)

    def __enter__(self) -> ToxiproxyHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_or_connect(url: str | None = None, *, log_dir: str | Path | None = None) -> ToxiproxyHandle:
    """Connect to `url` (or $TOXIPROXY_URL) if given, else start the embedded server and wait for it.

    Raises ConnectionError if the given server does not answer /version, RuntimeError if the
    embedded one does not come up (its log tail is in the message)."""
    url = url or os.environ.get(ENV_URL) or None
    if url:
        host, port = parse_url(url)
        if version_of(host, port, timeout=5.0) is None:
            raise ConnectionError(f"no Toxiproxy API answers at {url} (GET /version)")
        return ToxiproxyHandle(host, port)
    log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="toxiproxy-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _attempt in range(3):   # a free port can be taken by someone else before the child binds it
        port = net.free_port()
        log_path = log_dir / "toxiproxy.log"
        child = proc.start("toxiproxy", proc.orbitmq_argv("toxiproxy", "--listen", f"127.0.0.1:{port}"),
                           log_path=log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and child.alive():
            if version_of("127.0.0.1", port, timeout=1.0) is not None:
                return ToxiproxyHandle("127.0.0.1", port, child=child, log_path=log_path)
            time.sleep(0.05)
        last_error = child.log_tail(20)
        child.stop(timeout=5)
    raise RuntimeError(f"embedded toxiproxy did not start (log {log_dir / 'toxiproxy.log'}):\n{last_error}")
