"""The broker's framed shell runs a servicer coroutine's first step inside `data_received` and, if
it suspends, finishes it in a task (`_drive`): results, exceptions, wait_for/shield and
cancellation must behave as if the coroutine had been a task from the start."""

from __future__ import annotations

import asyncio

import pytest

from orbitmq.broker.remoting import _drive


async def _suspending(loop: asyncio.AbstractEventLoop, fail: bool = False) -> int:
    f = loop.create_future()
    loop.call_later(0.01, f.set_result, 5)
    r = await asyncio.wait_for(asyncio.shield(f), 5)     # what a parked long-poll pull does
    await asyncio.sleep(0)                                # a bare yield
    g = loop.create_future()
    loop.call_later(0.01, g.set_exception, KeyError("k"))
    try:
        await g
    except KeyError:
        r += 10
    if fail:
        raise ValueError("boom")
    return r + 1


def _start(coro):
    """The shell's first step: (None, result) if it finished, else (what it yielded, None)."""
    try:
        return coro.send(None), None
    except StopIteration as e:
        return None, e.value


def test_a_suspended_coroutine_finishes_with_its_result_and_exceptions():
    async def main():
        loop = asyncio.get_running_loop()
        c = _suspending(loop)
        yielded, _ = _start(c)
        assert yielded is not None
        assert await loop.create_task(_drive(c, yielded)) == 16
        c = _suspending(loop, fail=True)
        yielded, _ = _start(c)
        with pytest.raises(ValueError, match="boom"):
            await loop.create_task(_drive(c, yielded))
    asyncio.run(main())


def test_cancelling_the_task_cancels_the_coroutine():
    async def main():
        loop = asyncio.get_running_loop()
        seen = []

        async def parked():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                seen.append("cancelled inside")
                raise
        c = parked()
        yielded, _ = _start(c)
        t = loop.create_task(_drive(c, yielded))
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert seen == ["cancelled inside"]
    asyncio.run(main())
