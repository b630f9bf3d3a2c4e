"""Held dispatcher wake-ups (MessageStore.hold_dispatch / run_held_dispatch, used by the broker's
framed port around each read): the appends of the holding thread are indexed on that thread
after its replies, without waking the dispatcher thread; small backlogs only; other threads'
wake-ups are never held. Real files and rocksdict."""

from __future__ import annotations

import threading

from orbitmq.broker.store import GetStatus, Message, MessageStore, StoreConfig

SEG = 64 * 1024


def make(path) -> MessageStore:
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=SEG, expiry_interval_s=0))
    s.open()
    return s


def park_thread(s: MessageStore) -> None:
    """Stop the dispatcher thread (as stop() does) but leave the dispatcher usable and idle, so only
    the held path can index anything."""
    d = s.dispatcher
    d.stop()
    d._stop = False
    d.idle = True
    d._wake.clear()


def test_held_appends_are_indexed_on_the_holding_thread(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        park_thread(s)
        d = s.dispatcher
        for i in range(20):
            s.hold_dispatch()
            r, dup = s.put_batch_dedup([Message("T", f"m{i}".encode(), queue_id=0, tags="a", keys=[f"k{i}"],
                                                msg_id=f"ID{i:04d}")])
            assert not dup
            assert not d._wake.is_set()            # the dispatcher thread was not woken
            assert s.dispatched_offset < s.max_physical_offset
            s.run_held_dispatch()
            assert s.dispatched_offset == s.max_physical_offset
            got = s.get_messages("T", 0, i, 1)
            assert got.status == GetStatus.FOUND and got.messages[0].body == f"m{i}".encode()
        assert d.inline_rounds == 20
        assert s.query_by_key("T", "k7")[0].body == b"m7"
        assert s.query_by_msg_id("ID0011").body == b"m11"
    finally:
        s.close()


def test_nothing_held_nothing_done(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        park_thread(s)
        s.hold_dispatch()
        s.run_held_dispatch()
        assert s.dispatcher.inline_rounds == 0 and not s.dispatcher._wake.is_set()
    finally:
        s.close()


def test_a_large_backlog_goes_to_the_dispatcher_thread(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        park_thread(s)
        d = s.dispatcher
        s.hold_dispatch()
        s.put_batch([Message("T", b"x" * 1000, queue_id=0) for _ in range(10)])
        d.run_held(max_bytes=5000)               # 10 KB waiting: not on this thread
        assert d.inline_rounds == 0 and d._wake.is_set()
        assert s.dispatched_offset < s.max_physical_offset
        d.start()                                # the thread indexes it
        assert s.wait_dispatched(s.max_physical_offset, 30)
    finally:
        s.close()


def test_other_threads_wakes_are_not_held(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        park_thread(s)
        d = s.dispatcher
        s.hold_dispatch()                        # this thread holds ...
        t = threading.Thread(target=lambda: s.put(Message("T", b"other", queue_id=0)))
        t.start()
        t.join(30)
        assert d._wake.is_set()                  # ... another thread's append still wakes the dispatcher
        d._wake.clear()
        s.run_held_dispatch()                    # nothing of this thread's was held
        assert d.inline_rounds == 0 and not d._wake.is_set()
    finally:
        s.close()


def test_busy_dispatcher_is_woken_instead(tmp_path) -> None:
    s = make(tmp_path / "s")
    try:
        park_thread(s)
        d = s.dispatcher
        with d.lock:                             # a round (or truncation, expiry) in progress elsewhere
            s.hold_dispatch()
            s.put(Message("T", b"m", queue_id=0))
            s.run_held_dispatch()
        assert d.inline_rounds == 0 and d._wake.is_set()
    finally:
        s.close()


def test_a_slow_round_leaves_the_next_ones_to_the_dispatcher_thread(tmp_path) -> None:
    import time

    from orbitmq.broker.store import dispatcher as dmod

    s = make(tmp_path / "s")
    try:
        park_thread(s)
        d = s.dispatcher
        real = d.dispatch_once

        def slow() -> int:
            time.sleep(dmod.INLINE_SLOW_S * 2)   # as a stalled index write would be
            return real()
        d.dispatch_once = slow
        s.hold_dispatch()
        s.put(Message("T", b"a", queue_id=0))
        s.run_held_dispatch()
        assert d.inline_rounds == 1 and s.dispatched_offset == s.max_physical_offset
        d.dispatch_once = real
        s.hold_dispatch()
        s.put(Message("T", b"b", queue_id=0))
        s.run_held_dispatch()                    # backing off: the thread is woken instead
        assert d.inline_rounds == 1 and d._wake.is_set()
        assert s.dispatched_offset < s.max_physical_offset
    finally:
        s.close()
