"""One proxied TCP connection: two links (one per direction), each a chain of toxic stages.

Shell (asyncio). A `Link` reads its source socket in chunks of up to 32 KiB, passes them through a
pass-through stage and then one stage per toxic of its direction, and writes them to its
destination; when its chain ends it closes the destination completely, so the other direction
ends too (a toxic that closes one direction tears down the connection, as in the reference).
Adding, updating and removing toxics on a live link follow the reference: new toxics go at the
end; a removed or updated toxic first flushes what it held. Toxic behaviour: toxics_stages.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Callable

from orbitmq.chaos.toxics import Toxic
from orbitmq.chaos.toxics_stages import Chunk, Pipe, Stub

log = logging.getLogger(__name__)

READ_SIZE = 32 * 1024


def set_linger0(writer: asyncio.StreamWriter) -> None:
    """SO_LINGER 0: closing the socket sends RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Link:
    """One direction of a connection: source reader -> stages -> destination writer."""

    def __init__(self, direction: str, toxics: list[Toxic], src: asyncio.StreamReader,
                 dest: asyncio.StreamWriter, rng: random.Random, on_dest_closed: Callable[[], None]) -> None:
        self.direction = direction
        self.src, self.dest, self.rng = src, dest, rng
        self.on_dest_closed = on_dest_closed
        self.configs: list[Toxic | None] = [None, *toxics]   # stage 0 is the hidden pass-through
        self.input = Pipe(1)
        self.stubs: list[Stub] = []
        last = self.input
        for i in range(len(self.configs)):
            nxt_cfg = self.configs[i + 1] if i + 1 < len(self.configs) else None
            nxt = Pipe(nxt_cfg.spec.buffer if nxt_cfg is not None else 1)
            self.stubs.append(Stub(last, nxt, rng))
            last = nxt
        self.output = last
        self.lock = asyncio.Lock()
        self.tasks: list[asyncio.Task] = []
        self.dead = False

    def start(self) -> None:
        self.tasks.append(asyncio.ensure_future(self._read()))
        for stub, cfg in zip(self.stubs, self.configs, strict=True):
            stub.start(cfg)
        self.tasks.append(asyncio.ensure_future(self._write()))

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.src.read(READ_SIZE)
                if not data:
                    break
                await self.input.put(Chunk(data, loop.time()))
        except (ConnectionError, OSError):
            pass
        finally:
            self.input.close()

    async def _write(self) -> None:
        try:
            while True:
                c = await self.output.get()
                if c is None or self.dest.is_closing():
                    break
                self.dest.write(c.data)
                await self.dest.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.dest.close()
            self.on_dest_closed()

    def all_tasks(self) -> list[asyncio.Task]:
        return self.tasks + [s.task for s in self.stubs if s.task is not None]

    def _index(self, name: str) -> int | None:
        for i, cfg in enumerate(self.configs):
            if cfg is not None and cfg.name == name:
                return i
        return None

    # -- chain changes (each runs under the link's lock, in the order they were asked) ----------
    async def add_toxic(self, toxic: Toxic) -> None:
        async with self.lock:
            if self.dead:
                return
            last = self.stubs[-1]
            newin = Pipe(toxic.spec.buffer)
            new = Stub(newin, last.output, self.rng)
            self.stubs.append(new)
            self.configs.append(toxic)
            if await last.interrupt():
                last.output = newin
                new.start(toxic)
                last.start(self.configs[-2])
            else:  # the chain already ended: keep the bookkeeping consistent, nothing runs
                new.output = newin
                new.close()

    async def update_toxic(self, toxic: Toxic) -> None:
        async with self.lock:
            i = self._index(toxic.name)
            if self.dead or i is None:
                return
            self.configs[i] = toxic
            if await self.stubs[i].interrupt():
                self.stubs[i].start(toxic)

    async def remove_toxic(self, toxic: Toxic) -> None:
        async with self.lock:
            i = self._index(toxic.name)
            if self.dead or i is None:
                return
            stub, prev = self.stubs[i], self.stubs[i - 1]
            if not await stub.interrupt():
                return
            if toxic.type == "timeout":   # removing a timeout closes the connections it was on
                stub.close()
                del self.stubs[i], self.configs[i]
                return
            # stop the previous stage while moving what reaches this one straight on
            stopping = asyncio.ensure_future(prev.interrupt())
            while not stopping.done():
                got, c = stub.input.take()
                if got and c is None:
                    stub.close()
                    await asyncio.wait([stopping])
                    return
                if got:
                    await stub.output.put(c)
                    continue
                await asyncio.wait([stub.input.waiter(), stopping], return_when=asyncio.FIRST_COMPLETED)
            restarted = stopping.result()
            while True:
                got, c = stub.input.take()
                if not got:
                    break
                if c is None:
                    stub.close()
                    return
                stub.output.force(c)
            prev.output = stub.output
            del self.stubs[i], self.configs[i]
            if restarted:
                prev.start(self.configs[i - 1])


class Connection:
    """A client socket, its upstream socket and the two links between them."""

    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter], chains: dict[str, list[Toxic]],
                 rng: random.Random, linger0: bool, on_finished: Callable[[Connection], None]) -> None:
        self.client_w, self.upstream_w = client[1], upstream[1]
        self.linger0 = linger0
        if linger0:
            set_linger0(self.client_w)
            set_linger0(self.upstream_w)
        self.on_finished = on_finished
        self.links = {
            "upstream": Link("upstream", list(chains["upstream"]), client[0], upstream[1], rng, self._check_done),
            "downstream": Link("downstream", list(chains["downstream"]), upstream[0], client[1], rng,
                               self._check_done),
        }
        self.finished = False

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    def close(self) -> None:
        """Close both sockets now (FIN, or RST for a connection opened with a reset_peer toxic)."""
        for w in (self.client_w, self.upstream_w):
            if self.linger0:
                w.transport.abort()
            else:
                w.close()
        self._check_done()

    def _check_done(self) -> None:
        if self.finished or not (self.client_w.is_closing() and self.upstream_w.is_closing()):
            return
        self.finished = True
        me = asyncio.current_task()
        for link in self.links.values():
            link.dead = True
            for t in link.all_tasks():
                if t is not me and not t.done():
                    t.cancel()
        self.on_finished(self)
