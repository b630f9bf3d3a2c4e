"""How each toxic acts on a byte stream: asyncio stages joined by bounded pipes.

Shell (asyncio). A `Stub` is one stage of a link's chain: it reads `Chunk`s (bytes plus the loop
time they were read) from its input `Pipe`, applies one toxic, and writes to its output pipe;
`None` on a pipe is EOF, and a stage that closes its output tears the link down. A stage can be
interrupted (to add, update or remove a toxic): it then stops without losing data. Toxicity is
rolled each time a stage (re)starts, as the reference server does. What the toxics are and their
validation is chaos/toxics.py.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from orbitmq.chaos.toxics import Toxic, slice_points

MAX_SLEEP = 10**7  # seconds; longer waits are as good as forever


@dataclass
class Chunk:
    data: bytes
    ts: float  # loop time it was read from the source socket (latency is measured from it)


class Interrupted(Exception):
    """The stage was asked to stop (its toxic is being added after, updated or removed)."""


class Pipe:
    """FIFO between two stages with one reader. `put` waits while `capacity` items are queued."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.items: deque[Chunk] = deque()
        self.eof = False
        self._getter: asyncio.Future | None = None
        self._putters: deque[asyncio.Future] = deque()

    def _wake_getter(self) -> None:
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)

    def _wake_putter(self) -> None:
        while self._putters:
            f = self._putters.popleft()
            if not f.done():
                f.set_result(None)
                return

    def force(self, chunk: Chunk) -> None:
        """Queue `chunk` whatever the capacity (used when a stage must not keep or drop data)."""
        if not self.eof and chunk.data:
            self.items.append(chunk)
            self._wake_getter()

    def close(self) -> None:
        """Mark EOF after what is queued; later puts are dropped."""
        self.eof = True
        self._wake_getter()

    async def put(self, chunk: Chunk, interrupt: asyncio.Future | None = None) -> bool:
        """Queue `chunk` once there is room. If `interrupt` fires first, queue it anyway, return False."""
        while len(self.items) >= self.capacity and not self.eof:
            f = asyncio.get_running_loop().create_future()
            self._putters.append(f)
            waits = [f] if interrupt is None else [f, interrupt]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not f.done():
                f.cancel()
            if interrupt is not None and interrupt.done():
                self.force(chunk)
                return False
        self.force(chunk)
        return True

    def take(self) -> tuple[bool, Chunk | None]:
        """(True, chunk) or (True, None) at EOF, (False, None) when empty."""
        if self.items:
            c = self.items.popleft()
            self._wake_putter()
            return True, c
        if self.eof:
            return True, None
        return False, None

    def waiter(self) -> asyncio.Future:
        self._getter = asyncio.get_running_loop().create_future()
        return self._getter

    async def get(self) -> Chunk | None:
        while True:
            got, c = self.take()
            if got:
                return c
            await self.waiter()


TIMEOUT = object()


class Stub:
    """One stage of a chain: its input, its (replaceable) output, per-connection state, its task."""

    def __init__(self, inp: Pipe, out: Pipe, rng: random.Random) -> None:
        self.input, self.output, self.rng = inp, out, rng
        self.state: dict[str, Any] = {}
        self.closed = False
        self.task: asyncio.Task | None = None
        self._intr: asyncio.Future | None = None
        self._interrupted = False

    # -- running ---------------------------------------------------------------------------------
    def start(self, toxic: Toxic | None) -> None:
        """Run `toxic` (None = pass-through) on this stage, rolling its toxicity now."""
        self._intr = asyncio.get_running_loop().create_future()
        self._interrupted = False
        apply = toxic is not None and self.rng.random() < toxic.toxicity
        self.task = asyncio.ensure_future(self._run(toxic if apply else None))

    async def _run(self, toxic: Toxic | None) -> None:
        try:
            await PIPES[toxic.type if toxic is not None else "noop"](self, toxic)
        except Interrupted:
            self._interrupted = True

    async def interrupt(self) -> bool:
        """Stop the running toxic; True if it stopped on request, False if the stage had closed."""
        if self.closed or self.task is None or self._intr is None:
            return False
        if not self._intr.done():
            self._intr.set_result(None)
        await asyncio.wait([self.task])
        return self._interrupted and not self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.output.close()

    # -- what toxics use -------------------------------------------------------------------------
    def _check(self) -> None:
        if self._intr is not None and self._intr.done():
            raise Interrupted

    async def recv(self, timeout: float | None = None) -> Any:
        """Next chunk, None at EOF, TIMEOUT if `timeout` s pass first; Interrupted if interrupted."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            self._check()
            got, c = self.input.take()
            if got:
                return c
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return TIMEOUT
            assert self._intr is not None
            await asyncio.wait([self.input.waiter(), self._intr], timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)

    async def send(self, chunk: Chunk) -> None:
        if not await self.output.put(chunk, self._intr):
            raise Interrupted

    async def sleep(self, seconds: float) -> None:
        """Sleep; Interrupted (at once) if interrupted meanwhile."""
        self._check()
        if seconds > 0:
            assert self._intr is not None
            await asyncio.wait([self._intr], timeout=min(seconds, MAX_SLEEP))
            self._check()

    async def hold(self, chunk: Chunk, seconds: float) -> None:
        """Sleep with `chunk` in hand; if interrupted, pass it on first (no data is dropped)."""
        try:
            await self.sleep(seconds)
        except Interrupted:
            self.output.force(chunk)
            raise


# -- the toxics ----------------------------------------------------------------------------------

async def noop(stub: Stub, toxic: Toxic | None) -> None:
    while True:
        c = await stub.recv()
        if c is None:
            stub.close()
            return
        await stub.send(c)


async def latency(stub: Stub, toxic: Toxic) -> None:
    """Hold each chunk until latency +- jitter ms after it was read; chunks stay pipelined."""
    loop = asyncio.get_running_loop()
    lat, jitter = toxic.attr("latency"), toxic.attr("jitter")
    while True:
        c = await stub.recv()
        if c is None:
            stub.close()
            return
        delay = lat + (stub.rng.randrange(jitter * 2) - jitter if jitter > 0 else 0)
        wait = delay / 1000 - (loop.time() - c.ts)
        await stub.hold(c, wait)
        c.ts += wait
        await stub.send(c)


async def bandwidth(stub: Stub, toxic: Toxic) -> None:
    """At most rate*1000 bytes/s; large chunks go out in 100 ms slices; rate 0 holds data forever."""
    loop = asyncio.get_running_loop()
    rate = toxic.attr("rate")
    debt = 0.0  # seconds still owed for what was sent (carries the sleep error over)
    while True:
        c = await stub.recv()
        if c is None:
            stub.close()
            return
        if rate <= 0:
            await stub.hold(c, MAX_SLEEP)
            continue
        debt += len(c.data) / (rate * 1000)
        step = rate * 100
        while len(c.data) > step:
            await stub.hold(c, 0.1)
            await stub.send(Chunk(c.data[:step], c.ts))
            c = Chunk(c.data[step:], c.ts)
            debt -= 0.1
        start = loop.time()
        await stub.hold(c, debt)
        debt -= loop.time() - start
        await stub.send(c)


async def slow_close(stub: Stub, toxic: Toxic) -> None:
    """Pass data; put off the close by `delay` ms once the source reached EOF."""
    while True:
        c = await stub.recv()
        if c is None:
            await stub.sleep(toxic.attr("delay") / 1000)
            stub.close()
            return
        await stub.send(c)


async def timeout(stub: Stub, toxic: Toxic) -> None:
    """Drop all data; close once `timeout` ms pass with no chunk (0 = never); EOF closes at once."""
    t = toxic.attr("timeout")
    while True:
        c = await stub.recv(t / 1000 if t > 0 else None)
        if c is None or c is TIMEOUT:
            stub.close()
            return


async def reset_peer(stub: Stub, toxic: Toxic) -> None:
    """Drop the first chunk (or EOF), wait `timeout` ms (not interruptible), then close (RST)."""
    await stub.recv()
    t = toxic.attr("timeout")
    if t > 0:
        await asyncio.sleep(min(t / 1000, MAX_SLEEP))
    stub.close()


async def slicer(stub: Stub, toxic: Toxic) -> None:
    """Cut each chunk into pieces around average_size +- size_variation, `delay` us apart."""
    avg, var, delay = toxic.attr("average_size"), toxic.attr("size_variation"), toxic.attr("delay")
    while True:
        c = await stub.recv()
        if c is None:
            stub.close()
            return
        for a, b in slice_points(len(c.data), avg, var, stub.rng):
            await stub.send(Chunk(c.data[a:b], c.ts))
            await stub.hold(Chunk(c.data[b:], c.ts), delay / 1e6)


async def limit_data(stub: Stub, toxic: Toxic) -> None:
    """Pass at most `bytes` bytes on this connection (the count survives updates), then close."""
    limit = toxic.attr("bytes")
    sent = stub.state.setdefault("sent", 0)
    while True:
        c = await stub.recv()
        if c is None:
            stub.close()
            return
        remaining = max(limit - sent, 0)
        if remaining < len(c.data):
            c = Chunk(c.data[:remaining], c.ts)
        if c.data:
            sent += len(c.data)
            stub.state["sent"] = sent
            await stub.send(c)
        if limit - sent <= 0:
            stub.close()
            return


PIPES = {"noop": noop, "latency": latency, "bandwidth": bandwidth, "slow_close": slow_close,
         "timeout": timeout, "reset_peer": reset_peer, "slicer": slicer, "limit_data": limit_data}
