"""Pure cores behind the broker service: consumer group membership, long-poll waiters, tag parsing."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.broker.consumer_groups import ConsumerGroups
from orbitmq.broker.ha.replication_hooks import ReplicationError
from orbitmq.broker.long_poll import LongPollWaiters
from orbitmq.broker.service import error_parts, parse_tags


def test_members_sorted_and_expire_when_silent():
    g = ConsumerGroups(expire_s=10)
    assert g.heartbeat("G", "c2", {"T": "*"}, 0, 0.0)
    assert g.heartbeat("G", "c1", {"T": "*"}, 0, 5.0)
    assert not g.heartbeat("G", "c2", {"T": "*"}, 0, 6.0)  # same subscriptions: no change
    assert g.heartbeat("G", "c2", {"T": "a"}, 0, 6.0)  # new subscription: a change
    assert g.clients("G", 10.0) == ["c1", "c2"]
    assert g.clients("G", 15.5) == ["c2"]  # c1 silent for 10.5 s
    assert g.expire(16.5) == [("G", "c2")]
    assert g.groups(16.5) == [] and g.clients("G", 16.5) == []


def test_unregister_leaves_at_once():
    g = ConsumerGroups(expire_s=100)
    g.heartbeat("G", "a", {}, 0, 0.0)
    g.heartbeat("G", "b", {}, 0, 0.0)
    assert g.unregister("G", "a") and not g.unregister("G", "a") and not g.unregister("H", "b")
    assert g.clients("G", 1.0) == ["b"]
    assert [m.subscriptions for m in g.members("G", 1.0)] == [{}]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["hb", "unreg", "tick"]), st.sampled_from(["a", "b", "c"])), max_size=50))
def test_membership_is_exactly_recent_heartbeats(ops):
    g = ConsumerGroups(expire_s=3)
    now = 0.0
    last: dict[str, float] = {}
    for op, cid in ops:
        if op == "hb":
            g.heartbeat("G", cid, {}, 0, now)
            last[cid] = now
        elif op == "unreg":
            g.unregister("G", cid)
            last.pop(cid, None)
        else:
            now += 1.0
        assert g.clients("G", now) == sorted(c for c, t in last.items() if now - t <= 3)


def test_parse_tags():
    assert parse_tags("") is None and parse_tags(" * ") is None and parse_tags("a || *") is None
    assert parse_tags("a") == {"a"} and parse_tags("a || b ||") == {"a", "b"}


def test_error_parts_maps_typed_errors_and_hides_nothing_else():
    status, code, details, master = error_parts(ReplicationError("NOT_MASTER", "go away", "127.0.0.1:5"))
    assert (status.name, code, details, master) == ("FAILED_PRECONDITION", "NOT_MASTER", "go away", "127.0.0.1:5")
    status, code, details, _ = error_parts(RuntimeError("boom"))
    assert (status.name, code) == ("INTERNAL", "INTERNAL") and "boom" in details


def test_long_poll_wakes_parked_waiters_only_for_their_queue():
    async def main():
        w = LongPollWaiters(asyncio.get_running_loop())
        fa, fb = w.park(("T", 0)), w.park(("T", 1))
        assert w.parked == 2
        w.notify_threadsafe([("T", 0)])  # as the dispatcher thread would
        assert await w.wait(fa, 2.0) is True
        assert await w.wait(fb, 0.05) is False
        w.unpark(("T", 0), fa)
        w.unpark(("T", 1), fb)
        assert w.parked == 0
        w.notify_threadsafe([("T", 1)])  # nobody waits: no callback scheduled, nothing breaks
        fc = w.park(("U", 0))
        w.wake_all()
        assert fc.done() and w.parked == 0

    asyncio.run(main())


def test_long_poll_notify_on_the_loop_wakes_at_once_and_a_timeout_says_false():
    async def main():
        w = LongPollWaiters(asyncio.get_running_loop())
        f = w.park(("T", 0))
        w.notify_threadsafe({("T", 0)})   # the framed port's dispatch round runs on the loop
        assert f.done() and f.result() is True and w.parked == 0   # woken in this call, not later
        g = w.park(("T", 0))
        t0 = asyncio.get_running_loop().time()
        assert await w.wait(g, 0.05) is False and g.done()
        assert asyncio.get_running_loop().time() - t0 >= 0.04
        w.unpark(("T", 0), g)
        h = w.park(("T", 0))
        task = asyncio.ensure_future(w.wait(h, 5.0))
        await asyncio.sleep(0)
        task.cancel()                      # the connection went away while parked
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert h.cancelled()
        w.notify([("T", 0)])               # a cancelled waiter is skipped, nothing raises
        assert w.parked == 0

    asyncio.run(main())


def test_long_poll_wakes_from_another_thread():
    import threading

    async def main():
        w = LongPollWaiters(asyncio.get_running_loop())
        f = w.park(("T", 3))
        threading.Timer(0.05, w.notify_threadsafe, args=([("T", 3)],)).start()
        t0 = asyncio.get_running_loop().time()
        assert await w.wait(f, 5.0)
        assert asyncio.get_running_loop().time() - t0 < 2.0

    asyncio.run(main())
