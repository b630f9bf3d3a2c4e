"""client/send_future.py: futures sharing one Condition behave as concurrent.futures.Future does
for their callers (result, exception, timeouts, callbacks, cancel, wait/as_completed), with real
threads resolving them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, as_completed, wait
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from orbitmq.client.send_future import SendFuture, resolve


def test_result_waits_for_its_own_future_not_for_a_sibling():
    cond = threading.Condition()
    a, b = SendFuture(cond), SendFuture(cond)
    threading.Timer(0.05, lambda: resolve(cond, [b], ["b"])).start()      # a sibling's notify wakes a's waiter
    threading.Timer(0.3, lambda: resolve(cond, [a], ["a"])).start()
    t0 = time.monotonic()
    assert a.result(5) == "a"
    assert time.monotonic() - t0 >= 0.25
    assert b.result(0) == "b"


def test_timeout_exception_and_callbacks():
    cond = threading.Condition()
    f = SendFuture(cond)
    with pytest.raises(FutureTimeout):
        f.result(0.05)
    seen = []
    f.add_done_callback(lambda x: seen.append(x.exception()))
    err = ValueError("no")
    f.set_exception(err)
    assert f.exception(0) is err and seen == [err]
    with pytest.raises(ValueError):
        f.result()


def test_resolve_gives_results_in_order_skips_cancelled_and_counts():
    cond = threading.Condition()
    futs = [SendFuture(cond) for _ in range(5)]
    assert futs[1].cancel()
    got = []
    futs[3].add_done_callback(lambda f: got.append(f.result()))
    assert resolve(cond, futs, iter(range(4))) == 4     # fewer results than futures: the rest stay pending
    assert [f.result(0) for f in (futs[0], futs[2], futs[3])] == [0, 2, 3] and got == [3]
    assert futs[1].cancelled() and not futs[4].done()


def test_wait_and_as_completed_work_on_them():
    cond = threading.Condition()
    futs = [SendFuture(cond) for _ in range(3)]
    threading.Timer(0.05, lambda: resolve(cond, futs[:1], ["x"])).start()
    done, pending = wait(futs, timeout=5, return_when=FIRST_COMPLETED)
    assert done == {futs[0]} and len(pending) == 2
    threading.Timer(0.05, lambda: resolve(cond, futs[1:], ["y", "z"])).start()
    assert sorted(f.result() for f in as_completed(futs, timeout=5)) == ["x", "y", "z"]
