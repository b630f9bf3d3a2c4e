"""The embedded Toxiproxy server: the HTTP API and the proxies' listeners and connections (asyncio).

Shell. `ProxyRuntime` is the registry's `Runtime`: it binds each proxy's listening socket
(loopback only), accepts clients, dials the upstream and runs a `Connection` per client; toxic
changes are applied to every live connection before the HTTP answer is written (`settle`).
`serve()` runs the HTTP/1.1 API (framing in toxiproxy_http.py, answers in toxiproxy_api.py) until
SIGTERM/SIGINT, then closes every listener and connection. Rules live in toxiproxy_registry.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from orbitmq.chaos.toxics import Toxic
from orbitmq.chaos.toxiproxy_api import handle, plain
from orbitmq.chaos.toxiproxy_http import (
    MAX_HEAD,
    HttpError,
    RequestHead,
    parse_chunk_size,
    parse_head,
    render,
)
from orbitmq.chaos.toxiproxy_link import Connection
from orbitmq.chaos.toxiproxy_registry import BindError, ProxyState, Registry

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 25.0  # the reference answers 503 after 25 s; we answer anyway, with what is done


def loopback_target(addr: str, *, what: str) -> tuple[str, int]:
    """(ip, port) for a "host:port" in 127.0.0.0/8 ("" and "localhost" mean 127.0.0.1)."""
    if addr == "":
        addr = ":0"  # as the reference: no address = any port (here on 127.0.0.1, not every interface)
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{what} {addr}: missing or bad port in address")
    host = host.strip("[]")
    if host in ("", "localhost"):
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{what} {addr}: the embedded server uses 127.0.0.0/8 addresses only") from None
    if ip.version != 4 or not ip.is_loopback:
        raise ValueError(f"{what} {addr}: the embedded server uses 127.0.0.0/8 addresses only")
    return str(ip), int(port)


class _Listener:
    def __init__(self, proxy: ProxyState, sock: socket.socket) -> None:
        self.proxy, self.sock = proxy, sock
        self.server: asyncio.Server | None = None
        self.task: asyncio.Task | None = None
        self.stopped = False


class ProxyRuntime:
    """Listening sockets and live connections of every proxy, keyed by the proxy's uid."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.listeners: dict[int, _Listener] = {}
        self.conns: dict[int, set[Connection]] = {}
        self.pending: set[asyncio.Task] = set()

    def _track(self, aw: Awaitable) -> None:
        t = asyncio.ensure_future(aw)
        self.pending.add(t)
        t.add_done_callback(self.pending.discard)

    async def settle(self, tasks: set[asyncio.Task] | None = None, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Wait until `tasks` (default: all pending) are done: listeners started, toxic changes
        applied to every connection. Gives up after `timeout` s (a reset_peer stage that is
        sleeping cannot be interrupted, as in the reference)."""
        todo = set(self.pending if tasks is None else tasks)
        if todo:
            _done, left = await asyncio.wait(todo, timeout=timeout)
            if left:
                log.warning("%d toxic changes still in progress after %.0fs", len(left), timeout)

    # -- Runtime -------------------------------------------------------------------------------
    def start(self, proxy: ProxyState) -> str:
        try:
            host, port = loopback_target(proxy.listen, what="listen tcp")
        except ValueError as e:
            raise BindError(str(e)) from None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            reason = (e.strerror or str(e)).lower()
            raise BindError(f"listen tcp {host}:{port}: bind: {reason}") from None
        lst = _Listener(proxy, sock)
        self.listeners[proxy.uid] = lst
        self.conns.setdefault(proxy.uid, set())

        async def serve() -> None:
            lst.server = await asyncio.start_server(
                lambda r, w: self._accept(lst, r, w), sock=sock, limit=2 * 32 * 1024)
            if lst.stopped:
                lst.server.close()

        lst.task = asyncio.ensure_future(serve())
        self.pending.add(lst.task)
        lst.task.add_done_callback(self.pending.discard)
        bound = sock.getsockname()
        log.info("proxy %s listening on %s:%s -> %s", proxy.name, bound[0], bound[1], proxy.upstream)
        return f"{bound[0]}:{bound[1]}"

    def stop(self, proxy: ProxyState) -> None:
        lst = self.listeners.pop(proxy.uid, None)
        if lst is not None:
            lst.stopped = True
            if lst.server is not None:
                lst.server.close()           # closes the listening socket now
            elif lst.task is not None and not lst.task.done():
                lst.task.cancel()            # not started yet (same API call): it never registers
                lst.sock.close()
        for conn in list(self.conns.get(proxy.uid, ())):
            conn.close()
        log.info("proxy %s stopped", proxy.name)

    def _each_link(self, proxy: ProxyState, toxic: Toxic):
        for conn in list(self.conns.get(proxy.uid, ())):
            yield conn.links[toxic.direction]

    def toxic_added(self, proxy: ProxyState, toxic: Toxic) -> None:
        for link in self._each_link(proxy, toxic):
            self._track(link.add_toxic(toxic))

    def toxic_updated(self, proxy: ProxyState, toxic: Toxic) -> None:
        for link in self._each_link(proxy, toxic):
            self._track(link.update_toxic(toxic))

    def toxic_removed(self, proxy: ProxyState, toxic: Toxic) -> None:
        for link in self._each_link(proxy, toxic):
            self._track(link.remove_toxic(toxic))

    # -- data path -----------------------------------------------------------------------------
    async def _accept(self, lst: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proxy = lst.proxy
        if lst.stopped:
            writer.close()
            return
        try:
            host, port = loopback_target(proxy.upstream, what="dial tcp")
            ureader, uwriter = await asyncio.open_connection(host, port, limit=2 * 32 * 1024)
        except (OSError, ValueError) as e:
            log.warning("proxy %s: unable to open connection to upstream %s: %s", proxy.name, proxy.upstream, e)
            writer.close()
            return
        if lst.stopped:
            writer.close()
            uwriter.close()
            return
        linger0 = any(t.type == "reset_peer" for t in proxy.toxics())
        conns = self.conns.setdefault(proxy.uid, set())
        conn = Connection((reader, writer), (ureader, uwriter), proxy.chains, self.rng, linger0,
                          on_finished=conns.discard)
        conns.add(conn)
        conn.start()

    def close_all(self) -> None:
        for lst in list(self.listeners.values()):
            self.stop(lst.proxy)


async def _read_body(reader: asyncio.StreamReader, head: RequestHead) -> bytes:
    if head.chunked:
        parts = []
        while True:
            n = parse_chunk_size(await reader.readuntil(b"\r\n"))
            if n == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":   # trailers
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(n))
            await reader.readexactly(2)
    n = head.content_length()
    return await reader.readexactly(n) if n else b""


class ApiServer:
    """The HTTP API on one address, answering from `registry`."""

    def __init__(self, registry: Registry, runtime: ProxyRuntime) -> None:
        self.registry, self.runtime = registry, runtime
        self.clients: set[asyncio.StreamWriter] = set()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.add(writer)
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    raise HttpError(431, "request head too large") from None
                head = parse_head(raw[:-4])
                if head.expects_continue:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await _read_body(reader, head)
                before = set(self.runtime.pending)
                resp = handle(self.registry, head.method, head.path, head.headers, body)
                await self.runtime.settle(self.runtime.pending - before)   # only what this request began
                writer.write(render(resp.status, resp.body, resp.content_type, resp.headers,
                                    keep_alive=head.keep_alive, now=time.time()))
                await writer.drain()
                if not head.keep_alive:
                    return
        except HttpError as e:
            resp = plain(e.status, str(e))
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(render(e.status, resp.body, resp.content_type, keep_alive=False, now=time.time()))
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.clients.discard(writer)
            writer.close()


async def serve(listen: str, *, config: Path | None = None, seed: int | None = None,
                on_ready: Callable[[str], None] | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the API on `listen` until SIGTERM/SIGINT (or `stop` is set), then close everything."""
    runtime = ProxyRuntime(random.Random(seed))
    registry = Registry(runtime)
    if config is not None:
        status, result = registry.populate(Path(config).read_bytes())
        await runtime.settle()
        if status != 201:
            log.error("populating from %s failed: %s", config, result.get("error"))
        else:
            log.info("populated %d proxies from %s", len(result["proxies"] or []), config)
    api = ApiServer(registry, runtime)
    host, port = loopback_target(listen, what="listen tcp")
    server = await asyncio.start_server(api.connection, host, port, limit=MAX_HEAD, reuse_address=True)
    bound = server.sockets[0].getsockname()
    addr = f"{bound[0]}:{bound[1]}"
    log.info("Toxiproxy API listening on http://%s", addr)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(addr)
    try:
        await stop.wait()
    finally:
        log.info("stopping: closing the API, %d proxies and their connections", len(registry.proxies))
        server.close()
        for w in list(api.clients):
            w.close()
        runtime.close_all()
        await asyncio.sleep(0.05)
        for t in asyncio.all_tasks():
            if t is not asyncio.current_task():
                t.cancel()
