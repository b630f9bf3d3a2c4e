"""The client API against real namesrv + broker processes: receipts, batching, selectors, the push
consumer's RECONSUME_LATER, lite pull with commits, admin commands, and a typed error for every
bad input."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from orbitmq.client import (
    Admin,
    ConsumeStatus,
    Message,
    MessageQueue,
    Producer,
    PullConsumer,
    PushConsumer,
    errors,
    select_by_hash,
)
from orbitmq.common import proc
from orbitmq.common.proc import wait_until

pytestmark = pytest.mark.process


@pytest.fixture
def one_broker(cluster):
    cluster.start_broker("bs1", ["--set", "max_message_size=4096"])
    cluster.create_topic("Api", 4)
    return cluster


def test_send_modes_and_receipts(one_broker):
    ns = one_broker.namesrv
    with Producer(ns, linger_ms=2, batch_max_messages=50) as p:
        r = p.send(Message("Api", b"hello", tags="t", keys=["k1"]))
        assert r.broker_set == "bs1" and 0 <= r.queue_id < 4 and r.queue_offset >= 0 and r.msg_id
        batch = p.send_batch([Message("Api", f"b{i}".encode()) for i in range(10)])
        assert len({x.queue for x in batch}) == 1
        assert [x.queue_offset for x in batch] == list(range(batch[0].queue_offset, batch[0].queue_offset + 10))
        futs = [p.send_async(Message("Api", f"a{i}".encode())) for i in range(500)]
        receipts = [f.result(timeout=30) for f in futs]
        assert len({x.msg_id for x in receipts}) == 500
        per_queue: dict = {}
        for x in receipts:
            per_queue.setdefault(x.queue, []).append(x.queue_offset)
        for offs in per_queue.values():        # no gaps, no overlaps (batches may land out of order)
            assert sorted(offs) == list(range(min(offs), min(offs) + len(offs)))
        same = {p.send(Message("Api", b"o"), selector=select_by_hash, arg="order-42").queue for _ in range(5)}
        assert len(same) == 1
        p.send_oneway(Message("Api", b"fire-and-forget"))
        msg = Message("Api", b"keep-id", msg_id="MY-ID-1")
        assert p.send(msg).msg_id == "MY-ID-1"
    # batches closed by the byte limit: every future still gets its own message's receipt
    with Producer(ns, batch_max_bytes=3000, linger_ms=1) as p2:
        msgs = [Message("Api", b"y" * (100 + (i * 397) % 1900)) for i in range(200)]
        futs = [p2.send_async(m) for m in msgs]
        assert [f.result(timeout=30).msg_id for f in futs] == [m.msg_id for m in msgs]


def test_push_consumer_reconsume_later_then_success_and_commit(one_broker):
    ns = one_broker.namesrv
    with Producer(ns) as p:
        sent = {p.send(Message("Api", f"m{i}".encode())).msg_id for i in range(40)}
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()

    def listener(msgs):
        with lock:
            for m in msgs:
                seen.setdefault(m.msg_id, []).append(m.reconsume_times)
            first = any(m.reconsume_times == 0 for m in msgs)
        return ConsumeStatus.RECONSUME_LATER if first else ConsumeStatus.SUCCESS

    c = PushConsumer("retry-g", ns, reconsume_delay_s=0.1, rebalance_interval_s=0.5, commit_interval_s=0.2)
    c.subscribe("Api")
    c.register_listener(listener)
    c.start()
    try:
        wait_until(lambda: all(len(seen.get(i, [])) >= 2 for i in sent), 30, what="every message redelivered once")
    finally:
        c.shutdown()
    assert all(seen[i][:2] == [0, 1] for i in sent)
    with Admin(ns) as admin:
        rows = admin.consumer_progress("retry-g", "Api")
    assert sum(r.lag for r in rows) == 0 and all(r.consumer_offset == r.broker_offset for r in rows)


def _start_pulling(c: PushConsumer, topic: str, listener, queues: int) -> None:
    """Subscribe, start, and wait until every one of the topic's queues has a pull in flight."""
    c.subscribe(topic)
    c.register_listener(listener)
    c.start()
    wait_until(lambda: len(c.assignment()) == queues and all(qs.pull is not None for qs in c._queues.values()),
               30, what=f"{queues} queue(s) pulling")


def test_push_consumer_chains_pulls_delivers_everything_once_and_stops_a_parked_chain(one_broker, monkeypatch):
    """Pulls are issued back to back by the thread that handled each reply; after CHAIN_MAX (3 here)
    the pull thread takes over again. Every message arrives once, in order per queue, and shutdown
    cancels a chained pull parked in a 10 s long poll at once."""
    import time

    from orbitmq.client import consumer_base

    monkeypatch.setattr(consumer_base, "CHAIN_MAX", 3)
    ns = one_broker.namesrv
    got: dict[int, list[int]] = {}
    chains: list[int] = []
    lock = threading.Lock()
    c = PushConsumer("chain-g", ns, pull_batch=4, long_poll_ms=10_000, consume_from="last",
                     rebalance_interval_s=0.5, threads=1,
                     on_rebalance=lambda qs: None)

    def listener(msgs):
        with lock:
            for m in msgs:
                got.setdefault(m.queue_id, []).append(m.queue_offset)
            chains.extend(qs.pull.chain for qs in list(c._queues.values()) if qs.pull is not None)

    try:
        _start_pulling(c, "Api", listener, 4)
        with Producer(ns) as p:
            for i in range(30):
                p.send_batch([Message("Api", f"c{i}-{j}".encode()) for j in range(10)])
        wait_until(lambda: sum(len(v) for v in got.values()) >= 300, 30, what="300 messages consumed")
        time.sleep(0.3)                                     # nothing more may arrive
    finally:
        t0 = time.monotonic()
        c.shutdown()
        took = time.monotonic() - t0
    assert sum(len(v) for v in got.values()) == 300
    for offs in got.values():                               # once each, in order, no gaps
        assert offs == list(range(offs[0], offs[0] + len(offs)))
    assert max(chains) >= 1 and max(chains) <= 3            # chained, and the pull thread took over at 3
    assert took < 5.0, f"shutdown took {took:.1f}s with a 10 s long poll parked"


def test_pull_consumer_assign_poll_commit(one_broker):
    ns = one_broker.namesrv
    with Producer(ns) as p:
        receipts = [p.send(Message("Api", b"x"), selector=lambda qs, m, a: qs[0]) for _ in range(30)]
    q0 = receipts[0].queue
    c = PullConsumer("pull-g", ns, auto_commit=False, max_poll_messages=7)
    c.assign([q0])
    got = []
    try:
        while len(got) < 30:
            batch = c.poll(5.0)
            assert batch, "poll returned nothing before all messages were read"
            assert len(batch) <= 7
            got += batch
        c.commit()
    finally:
        c.close()
    assert [m.msg_id for m in got] == [r.msg_id for r in receipts]
    with Admin(ns) as admin:
        prog = {r.queue_id: r for r in admin.consumer_progress("pull-g", "Api")}
    assert prog[q0.queue_id].consumer_offset == receipts[-1].queue_offset + 1


def test_bad_inputs_get_typed_errors(one_broker):
    ns = one_broker.namesrv
    with Producer(ns, retries=0) as p:
        with pytest.raises(errors.TopicNotFoundError):
            p.send(Message("NoSuchTopic", b"x"))
        with pytest.raises(errors.BodyEmptyError):
            p.send(Message("Api", b""))
        with pytest.raises(errors.BodyTooLargeError):
            p.send(Message("Api", b"x" * 5000))
        with pytest.raises(TypeError):
            p.send(Message("Api", "not bytes"))
        with pytest.raises(errors.BadRequestError):
            p.send_batch([])
        with pytest.raises(errors.BadRequestError):
            p.send_batch([Message("Api", b"a"), Message("Other", b"b")])
    with Admin(ns) as admin:
        with pytest.raises(errors.BadTopicNameError):
            admin.create_topic("bad topic!", 4, wait_s=0)
        with pytest.raises(errors.BadRequestError):
            admin.create_topic("ZeroQueues", 0, wait_s=0)
        with pytest.raises(errors.BadRequestError):
            admin.create_topic("BadPerm", 4, perm=9, wait_s=0)
        with pytest.raises(errors.GroupNotFoundError):
            admin.delete_group("never-created")
        with pytest.raises(errors.TopicNotFoundError):
            admin.delete_topic("NoSuchTopic")
        admin.create_topic("ReadOnly", 2, perm=4)
    with Producer(ns, retries=0) as p, pytest.raises(errors.NoRouteError):
        p.send(Message("ReadOnly", b"x"))
    with pytest.raises(errors.NoRouteError), Producer("127.0.0.1:1", retries=0) as p:
        p.send(Message("Api", b"x"))
    with pytest.raises(ValueError):
        Producer("not-an-address")
    with pytest.raises(errors.BadRequestError):
        PushConsumer("", ns)
    bad = PushConsumer("bad group!", ns)
    bad.subscribe("Api")
    bad.register_listener(lambda msgs: None)
    with pytest.raises(errors.BadRequestError):
        bad.start()
    bad.shutdown()
    c = PushConsumer("g-unknown", ns)
    c.subscribe("NoSuchTopic")
    c.register_listener(lambda msgs: None)
    with pytest.raises(errors.TopicNotFoundError):
        c.start()
    c.shutdown()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(proc.orbitmq_argv(*args), capture_output=True, text=True, timeout=60)


def test_admin_commands(one_broker):
    ns = ["--namesrv", one_broker.namesrv]
    r = run_cli("admin", "topic", "create", "Cli", "--queues", "3", *ns, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["broker_sets"] == ["bs1"]
    r = run_cli("admin", "topic", "list", *ns, "--json")
    assert {"Api", "Cli"} <= set(json.loads(r.stdout))
    r = run_cli("admin", "topic", "route", "Cli", *ns, "--json")
    route = json.loads(r.stdout)
    assert route["queues"][0]["write_queues"] == 3 and route["broker_sets"][0]["broker_set"] == "bs1"
    r = run_cli("admin", "topic", "update", "Cli", "--queues", "5", *ns)
    assert r.returncode == 0 and "bs1" in r.stdout
    r = run_cli("admin", "cluster", "list", *ns, "--json", "--status")
    (row,) = json.loads(r.stdout)
    assert row["broker_set"] == "bs1" and row["role"] and row["max_offset"] >= 0
    with Producer(one_broker.namesrv) as p:
        for _ in range(6):
            p.send(Message("Cli", b"x"))
    assert run_cli("admin", "group", "create", "cli-g", *ns).returncode == 0
    r = run_cli("admin", "group", "progress", "cli-g", "--topic", "Cli", *ns, "--json")
    prog = json.loads(r.stdout)
    assert prog["total_lag"] == 6 and len(prog["queues"]) == 5
    r = run_cli("admin", "group", "progress", "cli-g", "--topic", "Cli", *ns)
    assert "TOTAL" in r.stdout and "LAG" in r.stdout
    assert run_cli("admin", "group", "delete", "cli-g", *ns).returncode == 0
    r = run_cli("admin", "group", "delete", "cli-g", *ns)
    assert r.returncode == 1 and "GROUP_NOT_FOUND" in r.stderr
    r = run_cli("admin", "topic", "delete", "Cli", *ns)
    assert r.returncode == 0
    r = run_cli("admin", "topic", "route", "Cli", *ns)
    assert r.returncode == 1 and "TOPIC_NOT_FOUND" in r.stderr
    r = run_cli("admin", "topic", "create", "bad topic!", *ns)
    assert r.returncode == 1 and "BAD_TOPIC_NAME" in r.stderr
    assert MessageQueue("Api", "bs1", 0).key() == "Api@bs1@0"


def test_producer_retries_on_another_broker_set_when_one_dies(cluster):
    cluster.start_broker("bs1")
    cluster.start_broker("bs2")
    cluster.create_topic("Failover", 2)
    with Producer(cluster.namesrv, retries=2, send_timeout_s=5) as p, \
            Producer(cluster.namesrv, retries=2, send_timeout_s=5) as pa:
        before = [p.send(Message("Failover", b"x")) for _ in range(20)]
        assert {r.broker_set for r in before} == {"bs1", "bs2"}
        warm = [pa.send_async(Message("Failover", b"w")) for _ in range(20)]
        assert all(f.result(timeout=10) for f in warm)
        assert {q.broker_set for q in pa.transport.route("Failover").write_queues} == {"bs1", "bs2"}
        cluster.brokers["bs1"][0].kill9()
        # async batches aimed at bs1 by the cached route fail and are retried on bs2
        futs = [pa.send_async(Message("Failover", f"async{i}".encode())) for i in range(300)]
        assert {f.result(timeout=30).broker_set for f in futs} == {"bs2"}
        msgs = [Message("Failover", f"after{i}".encode()) for i in range(40)]
        after = [p.send(m) for m in msgs]        # none fails: retried on bs2
        assert {r.broker_set for r in after} == {"bs2"}
        assert [r.msg_id for r in after] == [m.msg_id for m in msgs]   # the id survives the retry


def test_push_consumer_runs_a_quick_listener_before_a_caught_up_queues_next_pull(cluster, monkeypatch):
    """Over the framed protocol, a reply that reached the end of its queue goes to a quick listener
    before the queue's next pull is sent (that send would only delay it); with a slow listener the
    next pull goes first, as with a backlog. Every message arrives once, in order."""
    from orbitmq.client import consumer as consumer_mod

    monkeypatch.setattr(consumer_mod, "QUICK_LISTENER_S", 0.02)   # quick vs slow, whatever the load
    cluster.start_broker("bsq", ["--set", "remoting_listen=127.0.0.1:0"])
    cluster.create_topic("Quick", 1)
    ns = cluster.namesrv
    got: list[int] = []
    pull_first: list[bool] = []     # per call: had the next pull been sent when the listener ran?
    slow = threading.Event()
    c = PushConsumer("quick-g", ns, long_poll_ms=5_000, consume_from="last", threads=1)

    def listener(msgs):
        qs = next(iter(c._queues.values()))
        pull_first.append(qs.pull.offset > msgs[-1].queue_offset)
        got.extend(m.queue_offset for m in msgs)
        if slow.is_set():
            import time
            time.sleep(0.06)

    try:
        _start_pulling(c, "Quick", listener, 1)
        with Producer(ns) as p:
            for phase in ("quick", "slow"):
                if phase == "slow":
                    slow.set()
                calls = len(pull_first)
                for _ in range(12):      # one at a time: each reply finds the queue caught up
                    n = len(got)
                    p.send(Message("Quick", b"q"))
                    wait_until(lambda n=n: len(got) > n, 30, 0.005, what="the message consumed")
                firsts = pull_first[calls:]
                if phase == "quick":
                    assert c.transport._remoting, "the consumer should be on the framed protocol"
                    assert firsts.count(False) >= 10, firsts     # the listener ran before the next pull
                else:
                    assert firsts[3:].count(True) >= 8, firsts   # slow: the next pull went first
    finally:
        c.shutdown()
    assert got == list(range(got[0], got[0] + 24))
