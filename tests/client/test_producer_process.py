"""The producer against real brokers that stop answering (issue 8 #3): every `send_async` future
resolves (result or error) within its send timeout, whether the broker is paused (SIGSTOP) or
gone (kill -9), and `close()` returns instead of hanging in a retry queue."""

from __future__ import annotations

import threading
import time
from concurrent.futures import wait

import pytest

from orbitmq.client import Admin, Message, Producer, errors
from orbitmq.common import net
from orbitmq.common.proc import wait_until

pytestmark = pytest.mark.process

TIMEOUT_S = 1.5
SLACK_S = 5.0  # a loaded machine: resolution may lag the deadline by a scheduler hiccup, not by retries


def start(procs, tmp_path) -> tuple[str, object]:
    ns = f"127.0.0.1:{net.free_port()}"
    procs.start("namesrv", ["namesrv", "--listen", ns, "--set", "scan_interval_s=0.2"])
    net.wait_for_port(ns, 30)
    addr = f"127.0.0.1:{net.free_port()}"
    broker = procs.start("broker", ["broker", "--listen", addr, "--namesrv", ns, "--store-dir", str(tmp_path / "b"),
                                    "--broker-set", "bs1", "--set", "register_interval_s=0.5",
                                    "--set", "keepalive_interval_s=0.3"])
    net.wait_for_port(addr, 30)
    with Admin(ns) as admin:
        wait_until(lambda: admin.cluster_list(), 20, what="broker registered")
        admin.create_topic("Async", 4)
    return ns, broker


def blast(p: Producer, n: int) -> list[tuple[float, object]]:
    out = []
    for i in range(n):
        out.append((time.monotonic(), p.send_async(Message("Async", f"m{i}".encode()))))
    return out


def check_resolved_in_time(futs: list[tuple[float, object]]) -> dict[str, int]:
    """Every future resolves by its deadline (+ slack); the outcome counts by error code."""
    outcome: dict[str, int] = {}
    for t0, f in futs:
        left = t0 + TIMEOUT_S + SLACK_S - time.monotonic()
        done, _ = wait([f], timeout=max(0.0, left))
        assert done, f"a send_async future is unresolved {TIMEOUT_S + SLACK_S:.1f}s after the call"
        e = f.exception()
        code = "OK" if e is None else getattr(e, "code", type(e).__name__)
        outcome[code] = outcome.get(code, 0) + 1
    return outcome


def closes(p: Producer, limit: float = 30.0) -> bool:
    t = threading.Thread(target=p.close, daemon=True)
    t.start()
    t.join(limit)
    return not t.is_alive()


def test_futures_resolve_while_the_broker_is_paused_then_gone(procs, tmp_path):
    ns, broker = start(procs, tmp_path)
    p = Producer(ns, send_timeout_s=TIMEOUT_S, retries=2, batch_max_messages=10, linger_ms=1, max_in_flight=4)
    try:
        assert p.send_async(Message("Async", b"warm")).result(timeout=10).queue_offset >= 0
        broker.pause()
        try:
            futs = blast(p, 400)   # 40 batches, 4 in flight: most wait for a slot or a retry
            outcome = check_resolved_in_time(futs)
            assert outcome.get("OK", 0) == 0 and sum(outcome.values()) == 400, outcome
            more = blast(p, 50)
        finally:
            broker.resume()
        check_resolved_in_time(more)
        # after SIGCONT the broker answers again: new sends succeed
        assert p.send_async(Message("Async", b"again")).result(timeout=10).queue_offset >= 0
        broker.kill9()   # gone: the name server drops it, sends fail fast with an error
        gone = blast(p, 200)
        outcome = check_resolved_in_time(gone)
        assert outcome.get("OK", 0) == 0, outcome
        queued = blast(p, 100)
    finally:
        assert closes(p), "Producer.close() hung"
    check_resolved_in_time(queued)
    with pytest.raises(errors.ClientClosedError):
        p.send_async(Message("Async", b"late"))


def test_close_while_paused_fails_what_is_left(procs, tmp_path):
    ns, broker = start(procs, tmp_path)
    p = Producer(ns, send_timeout_s=30.0, retries=2, batch_max_messages=1, linger_ms=1, max_in_flight=2)
    p.send(Message("Async", b"warm"))
    broker.pause()
    try:
        futs = [p.send_async(Message("Async", f"x{i}".encode())) for i in range(2)]
        t = threading.Thread(target=p.close, kwargs={"timeout": 1.0}, daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), "Producer.close() hung with sends in flight to a paused broker"
        for f in futs:
            assert isinstance(f.exception(timeout=5), errors.OrbitError)
    finally:
        broker.resume()


def test_async_sends_go_to_the_selected_queue(procs, tmp_path):
    from orbitmq.client.routes import select_by_hash

    ns, _broker = start(procs, tmp_path)
    with Producer(ns, linger_ms=2) as p:
        queues = p.transport.route("Async").write_queues
        futs = {k: [p.send_async(Message("Async", f"{k}-{i}".encode()), selector=select_by_hash, arg=k)
                    for i in range(20)] for k in ("order-1", "order-2", "order-3")}
        for k, fs in futs.items():
            want = select_by_hash(queues, None, k)
            got = [f.result(timeout=10) for f in fs]
            assert {r.queue for r in got} == {want}


def test_async_batches_arrive_whole_and_resolve_while_paused(procs, tmp_path):
    """send_batch_async: each future gets its batch's receipts (ids, consecutive offsets of one
    queue), several batches in flight at once; bad input is refused at the call; a paused broker
    fails every future within the send timeout, and sends succeed again after SIGCONT."""
    from orbitmq.client import PullConsumer
    from orbitmq.client.routes import select_by_hash

    ns, broker = start(procs, tmp_path)
    with Producer(ns, send_timeout_s=TIMEOUT_S, max_in_flight=4) as p:
        with pytest.raises(errors.BadRequestError):
            p.send_batch_async([])
        with pytest.raises(errors.BadRequestError):
            p.send_batch_async([Message("Async", b"a"), Message("Other", b"b")])   # two topics
        nowhere = p.send_batch_async([Message("NoSuchTopic", b"a")])   # no route: the future fails, as send_batch raises
        assert isinstance(nowhere.exception(timeout=TIMEOUT_S + SLACK_S), errors.TopicNotFoundError)
        called = []
        futs = [p.send_batch_async([Message("Async", f"b{b}-{i}".encode()) for i in range(50)],
                                   callback=called.append) for b in range(12)]
        sent = {}
        for b, f in enumerate(futs):
            rs = f.result(timeout=10)
            assert len(rs) == 50 and len({r.queue for r in rs}) == 1
            offs = [r.queue_offset for r in rs]
            assert offs == list(range(offs[0], offs[0] + 50))
            sent.update({r.msg_id: f"b{b}-{i}".encode() for i, r in enumerate(rs)})
        wait_until(lambda: len(called) == 12, 5, what="callbacks")
        pinned = p.send_batch_async([Message("Async", b"k")], selector=select_by_hash, arg="order-7").result(10)
        assert pinned[0].queue == select_by_hash(p.transport.route("Async").write_queues, None, "order-7")
        broker.pause()
        try:
            t0 = time.monotonic()
            stuck = [p.send_batch_async([Message("Async", b"p") for _ in range(3)]) for _ in range(6)]
            for f in stuck:
                assert isinstance(f.exception(timeout=TIMEOUT_S + SLACK_S), errors.OrbitError)
            assert time.monotonic() - t0 < 6 * (TIMEOUT_S + SLACK_S)
        finally:
            broker.resume()
        assert len(p.send_batch_async([Message("Async", b"again")]).result(timeout=10)) == 1
    got = {}
    with PullConsumer("g-async-batch", ns, max_poll_messages=1000) as c:
        c.subscribe("Async")
        wait_until(lambda: got.update({m.msg_id: m.body for m in c.poll(0.5)}) or set(sent) <= set(got), 30,
                   what="every acknowledged batch message pulled back")
    assert {k: got[k] for k in sent} == sent
