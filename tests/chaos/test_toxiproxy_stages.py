"""The embedded Toxiproxy's stage machinery in one event loop, without sockets: pipes (capacity,
EOF, forced puts), interrupting a stage without losing data, toxicity, limit_data's count across
restarts and the slicer/latency stages on a chain of pipes."""

from __future__ import annotations

import asyncio
import random

from orbitmq.chaos.toxics import Toxic
from orbitmq.chaos.toxics_stages import Chunk, Pipe, Stub


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def drain(pipe: Pipe) -> tuple[list[bytes], bool]:
    """Everything queued now, and whether EOF follows it."""
    out = []
    while True:
        got, c = pipe.take()
        if not got:
            return out, False
        if c is None:
            return out, True
        out.append(c.data)


def test_pipe_capacity_backpressure_and_eof():
    async def main():
        p = Pipe(2)
        assert await p.put(Chunk(b"a", 0)) and await p.put(Chunk(b"b", 0))
        third = asyncio.ensure_future(p.put(Chunk(b"c", 0)))
        await asyncio.sleep(0.01)
        assert not third.done()                       # full: the writer waits
        assert (await p.get()).data == b"a"
        assert await third
        p.force(Chunk(b"d", 0))                        # forced puts ignore capacity
        p.force(Chunk(b"", 0))                         # empty chunks are dropped
        p.close()
        p.force(Chunk(b"late", 0))                     # after EOF nothing is queued
        assert await drain(p) == ([b"b", b"c", b"d"], True)
        assert await p.get() is None and await p.get() is None   # EOF stays
    run(main())


def test_put_interrupted_while_full_still_queues_the_chunk():
    async def main():
        p = Pipe(1)
        await p.put(Chunk(b"a", 0))
        intr = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(p.put(Chunk(b"b", 0), intr))
        await asyncio.sleep(0.01)
        intr.set_result(None)
        assert await waiting is False
        assert await drain(p) == ([b"a", b"b"], False)
    run(main())


def _stub(toxic: Toxic | None, seed: int = 1, out_capacity: int = 100) -> Stub:
    s = Stub(Pipe(1024), Pipe(out_capacity), random.Random(seed))
    s.start(toxic)
    return s


def test_interrupting_latency_flushes_the_held_chunk_and_restart_continues():
    async def main():
        lat = Toxic("l", "latency", "downstream", 1.0, {"latency": 60_000})
        s = _stub(lat)
        loop = asyncio.get_running_loop()
        s.input.force(Chunk(b"held", loop.time()))
        s.input.force(Chunk(b"queued", loop.time()))
        await asyncio.sleep(0.05)
        assert await drain(s.output) == ([], False)
        assert await s.interrupt() is True
        assert await drain(s.output) == ([b"held"], False)      # flushed at once, nothing lost
        s.start(Toxic("l", "latency", "downstream", 1.0, {"latency": 0}))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if s.output.items:
                break
        assert await drain(s.output) == ([b"queued"], False)
        s.input.close()
        await asyncio.wait_for(s.task, 5)
        assert s.closed and await drain(s.output) == ([], True)
        assert await s.interrupt() is False                     # a closed stage cannot be interrupted
    run(main())


def test_toxicity_is_rolled_per_start():
    async def main():
        hole = Toxic("t", "timeout", "downstream", 0.5, {"timeout": 0})
        applied = 0
        for seed in range(40):
            s = _stub(hole, seed=seed)
            s.input.force(Chunk(b"x", 0))
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            passed, _ = await drain(s.output)
            applied += passed == []
            await s.interrupt()
        assert 5 < applied < 35
        never = Toxic("t", "timeout", "downstream", 0.0, {"timeout": 0})
        for seed in range(20):
            s = _stub(never, seed=seed)
            s.input.force(Chunk(b"x", 0))
            for _ in range(50):
                await asyncio.sleep(0.001)
                if s.output.items:
                    break
            assert (await drain(s.output))[0] == [b"x"]
            await s.interrupt()
    run(main())


def test_limit_data_count_survives_a_restart_with_a_lower_limit():
    async def main():
        s = _stub(Toxic("c", "limit_data", "downstream", 1.0, {"bytes": 10}))
        s.input.force(Chunk(b"12345", 0))
        await asyncio.sleep(0.01)
        assert await drain(s.output) == ([b"12345"], False)
        assert await s.interrupt()
        s.start(Toxic("c", "limit_data", "downstream", 1.0, {"bytes": 8}))
        s.input.force(Chunk(b"67890", 0))
        await asyncio.wait_for(s.task, 5)
        assert await drain(s.output) == ([b"678"], True)
    run(main())


def test_slicer_stage_sends_bounded_pieces_in_order():
    async def main():
        s = _stub(Toxic("s", "slicer", "downstream", 1.0, {"average_size": 10, "size_variation": 5, "delay": 0}))
        payload = bytes(range(200))
        s.input.force(Chunk(payload, 0))
        s.input.close()
        await asyncio.wait_for(s.task, 5)
        pieces, eof = await drain(s.output)
        assert eof and b"".join(pieces) == payload
        assert len(pieces) >= 200 // 15 and all(0 < len(p) <= 15 for p in pieces)
    run(main())


def test_timeout_stage_closes_after_silence_and_drops_data():
    async def main():
        s = _stub(Toxic("t", "timeout", "downstream", 1.0, {"timeout": 50}))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        s.input.force(Chunk(b"dropped", 0))
        await asyncio.wait_for(s.task, 5)
        assert loop.time() - t0 >= 0.045
        assert await drain(s.output) == ([], True)
    run(main())


def test_timeout_timer_restarts_with_each_chunk():
    async def main():
        s = _stub(Toxic("t", "timeout", "downstream", 1.0, {"timeout": 1000}))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while loop.time() - t0 < 1.5:          # a chunk every 50 ms for longer than the timeout
            s.input.force(Chunk(b"ping", 0))
            last_ping = loop.time()
            await asyncio.sleep(0.05)
            assert not s.closed
        await asyncio.wait_for(s.task, 10)
        assert s.closed and loop.time() - last_ping >= 0.95
        assert await drain(s.output) == ([], True)
    run(main())
