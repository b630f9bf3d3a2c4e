"""Flushing on real files: group commit releases concurrent waiters (threads and asyncio) together."""

from __future__ import annotations

import asyncio
import threading
import time

from orbitmq.broker.store import Message, MessageStore, StoreConfig
from orbitmq.broker.store.flush import Flusher


def make(path, mode: str, interval: float = 0.5) -> MessageStore:
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=1 << 20, flush_mode=mode,
                                 flush_interval_s=interval, expiry_interval_s=0))
    s.open()
    return s


def test_group_commit_releases_concurrent_thread_waiters(tmp_path) -> None:
    s = make(tmp_path / "s", "sync")
    try:
        n_threads, per = 16, 20
        barrier = threading.Barrier(n_threads)
        ok: list[bool] = []

        def writer(t: int) -> None:
            barrier.wait()
            for i in range(per):
                r = s.put(Message("T", f"{t}-{i}".encode()))
                ok.append(s.wait_flushed(r.end_offset, 10) and s.flushed_offset >= r.end_offset)

        start = s.flusher.flushes
        ts = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        flushes = s.flusher.flushes - start
        assert len(ok) == n_threads * per and all(ok)
        # every append was waited for, yet far fewer fdatasyncs ran: waiters shared them
        assert 1 <= flushes < n_threads * per
    finally:
        s.close()


def test_group_commit_resolves_asyncio_waiters_once_per_flush(tmp_path) -> None:
    s = make(tmp_path / "s", "sync")

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        calls = 0
        orig = loop.call_soon_threadsafe

        def counting(cb, *args):
            nonlocal calls
            calls += 1
            return orig(cb, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]

        async def one(i: int) -> None:
            r = s.put(Message("T", str(i).encode()))
            await asyncio.wait_for(s.flushed(r.end_offset), 10)
            assert s.flushed_offset >= r.end_offset

        start = s.flusher.flushes
        await asyncio.gather(*(one(i) for i in range(200)))
        return calls, s.flusher.flushes - start

    try:
        calls, flushes = asyncio.run(main())
        assert flushes >= 1
        assert calls <= flushes  # one wake-up per flush for the whole loop, never one per message
        assert calls < 200
    finally:
        s.close()


def test_async_mode_flushes_periodically(tmp_path) -> None:
    s = make(tmp_path / "s", "async", interval=0.05)
    try:
        r = s.put(Message("T", b"x"))
        deadline = time.monotonic() + 5
        while s.flushed_offset < r.end_offset and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.flushed_offset >= r.end_offset
        assert s.wait_flushed(r.end_offset, 1)
    finally:
        s.close()


def test_wait_flushed_times_out_when_the_disk_does_not_answer() -> None:
    """Pure core with a stalled flush function: waiters get False, not a hang."""
    gate = threading.Event()
    end = [100]
    f = Flusher(lambda a, b: gate.wait(5), lambda: end[0], "sync", 0.5, flushed=0)
    f.start()
    try:
        t0 = time.monotonic()
        assert f.wait_flushed(100, 0.2) is False
        assert time.monotonic() - t0 < 2
    finally:
        gate.set()
        f.stop()
    assert f.flushed == 100
