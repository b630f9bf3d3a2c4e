"""Real `orbitmq namesrv` + `orbitmq broker` processes on loopback, driven with the generated stubs."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from orbitmq.common import net
from orbitmq.common.proc import wait_until
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2, namesrv_pb2, namesrv_pb2_grpc

pytestmark = pytest.mark.process

FAST = ["--set", "register_interval_s=0.5", "--set", "keepalive_interval_s=0.3"]


def start_namesrv(procs, expire_s: float = 60.0, name: str = "namesrv") -> str:
    addr = f"127.0.0.1:{net.free_port()}"
    procs.start(name, ["namesrv", "--listen", addr, "--expire-after-s", str(expire_s),
                       "--set", "scan_interval_s=0.2"])
    net.wait_for_port(addr, 30)
    return addr


def start_broker(procs, tmp_path, namesrv: str = "", name: str = "broker", bset: str = "bs1",
                 extra: list[str] | None = None, addr: str | None = None):
    addr = addr or f"127.0.0.1:{net.free_port()}"
    args = ["broker", "--listen", addr, "--store-dir", str(tmp_path / f"store-{name}"), "--cluster", "c1",
            "--broker-set", bset, "--broker-id", "0", *FAST, *(extra or [])]
    if namesrv:
        args += ["--namesrv", namesrv]
    child = procs.start(name, args)
    net.wait_for_port(addr, 30)
    return child, addr


def bstub(addr: str) -> broker_pb2_grpc.BrokerStub:
    ch = grpc.insecure_channel(addr, options=[("grpc.max_send_message_length", 64 << 20)])
    return broker_pb2_grpc.BrokerStub(ch)


def nstub(addr: str) -> namesrv_pb2_grpc.NameServerStub:
    return namesrv_pb2_grpc.NameServerStub(grpc.insecure_channel(addr))


def create_topic(stub, topic: str, queues: int = 4, perm: int = 6) -> None:
    stub.CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
        topic=topic, read_queues=queues, write_queues=queues, perm=perm)), timeout=10)


def send(stub, topic: str, bodies: list[bytes], queue_id: int = 0, tags: str = "", keys=(), **kw):
    req = broker_pb2.SendRequest(topic=topic, queue_id=queue_id, messages=[
        common_pb2.Message(topic=topic, body=b, tags=tags, keys=list(keys)) for b in bodies], **kw)
    return stub.SendMessage(req, timeout=10)


def error_of(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    e = ei.value
    md = dict(e.trailing_metadata() or ())
    return e.code(), md.get("orbitmq-error", "")


def pull(stub, topic: str, qid: int, offset: int, n: int = 100, poll_ms: int = 0, tags: str = ""):
    return stub.PullMessage(broker_pb2.PullRequest(group="g1", topic=topic, queue_id=qid, queue_offset=offset,
                                                   max_messages=n, long_poll_ms=poll_ms, tag_expression=tags,
                                                   commit_offset=-1), timeout=30)


def route_of(ns, topic: str):
    return ns.GetTopicRoute(namesrv_pb2.GetTopicRouteRequest(topic=topic), timeout=5)


def route_gone(ns, topic: str) -> bool:
    try:
        route_of(ns, topic)
        return False
    except grpc.RpcError as e:
        return e.code() == grpc.StatusCode.NOT_FOUND


def test_broker_registers_route_cluster_info_and_topic_list(procs, tmp_path):
    ns_addrs = [start_namesrv(procs, name="ns1"), start_namesrv(procs, name="ns2")]
    _, addr = start_broker(procs, tmp_path, namesrv=",".join(ns_addrs))
    b = bstub(addr)
    create_topic(b, "Orders", queues=3)
    for ns_addr in ns_addrs:  # registered with every name server, topic change pushed at once
        ns = nstub(ns_addr)
        r = wait_until(lambda ns=ns: route_of(ns, "Orders"), 10, what="route")
        assert [(q.broker_set, q.read_queues, q.write_queues, q.perm) for q in r.queues] == [("bs1", 3, 3, 6)]
        assert dict(r.broker_sets[0].replicas) == {0: addr} and r.broker_sets[0].master_address == addr
        ci = ns.GetClusterInfo(namesrv_pb2.GetClusterInfoRequest(), timeout=5)
        assert [s.broker_set for s in ci.clusters["c1"].broker_sets] == ["bs1"]
        assert "Orders" in ns.GetTopicList(namesrv_pb2.GetTopicListRequest(cluster="c1"), timeout=5).topics
        code, err = error_of(lambda ns=ns: route_of(ns, "NoSuchTopic"))
        assert (code, err) == (grpc.StatusCode.NOT_FOUND, "TOPIC_NOT_FOUND")
    st = b.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=5)
    assert (st.cluster, st.broker_set, st.role) == ("c1", "bs1", "STANDALONE")


def test_sigkill_drops_route_at_once_and_sigstop_after_expiry(procs, tmp_path):
    ns_addr = start_namesrv(procs, expire_s=60.0)  # long: a drop within seconds proves the keep-alive
    ns = nstub(ns_addr)
    killed, a1 = start_broker(procs, tmp_path, namesrv=ns_addr, name="b1", bset="bs1")
    create_topic(bstub(a1), "K")
    wait_until(lambda: route_of(ns, "K"), 10, what="route of K")
    t0 = time.monotonic()
    killed.kill9()
    wait_until(lambda: route_gone(ns, "K"), 5, what="route of killed broker gone")
    assert time.monotonic() - t0 < 5

    ns2_addr = start_namesrv(procs, expire_s=4.0, name="ns-short")
    ns2 = nstub(ns2_addr)
    paused, a2 = start_broker(procs, tmp_path, namesrv=ns2_addr, name="b2", bset="bs2")
    create_topic(bstub(a2), "P")
    wait_until(lambda: route_of(ns2, "P"), 10, what="route of P")
    paused.pause()
    try:
        time.sleep(1.0)
        # not yet: keep-alives came every 0.3 s until the pause, 2.7 s of margin for a loaded machine
        assert not route_gone(ns2, "P")
        wait_until(lambda: route_gone(ns2, "P"), 20, what="paused broker expired")
    finally:
        paused.resume()
    wait_until(lambda: route_of(ns2, "P"), 10, what="resumed broker registered again")


def test_bad_inputs_get_clear_errors_and_lose_nothing(procs, tmp_path):
    _, addr = start_broker(procs, tmp_path, extra=["--set", "max_message_size=2048"])
    b = bstub(addr)
    create_topic(b, "T", queues=2)
    ok = send(b, "T", [b"first", b"second"], keys=["k1"])
    assert [r.queue_offset for r in ok.results] == [0, 1]
    cases = {
        "bad topic name": (lambda: send(b, "bad topic!", [b"x"]), "BAD_TOPIC_NAME"),
        "long topic name": (lambda: send(b, "x" * 300, [b"x"]), "BAD_TOPIC_NAME"),
        "bad tag": (lambda: send(b, "T", [b"x"], tags="a||b"), "BAD_TAG"),
        "oversize body": (lambda: send(b, "T", [b"x" * 2049]), "BODY_TOO_LARGE"),
        "empty body": (lambda: send(b, "T", [b""]), "BODY_EMPTY"),
        "one bad body in a batch": (lambda: send(b, "T", [b"ok", b""]), "BODY_EMPTY"),
        "unknown topic": (lambda: send(b, "Nope", [b"x"]), "TOPIC_NOT_FOUND"),
        "no messages": (lambda: b.SendMessage(broker_pb2.SendRequest(topic="T", queue_id=0), timeout=5), "BAD_REQUEST"),
        "queue out of range": (lambda: send(b, "T", [b"x"], queue_id=7), "BAD_REQUEST"),
        "pull unknown topic": (lambda: pull(b, "Nope", 0, 0), "TOPIC_NOT_FOUND"),
        "pull negative offset": (lambda: pull(b, "T", 0, -5), "BAD_REQUEST"),
        "message of another topic": (lambda: b.SendMessage(broker_pb2.SendRequest(topic="T", queue_id=0, messages=[
            common_pb2.Message(topic="Other", body=b"x")]), timeout=5), "BAD_REQUEST"),
        "bad topic config": (lambda: create_topic(b, "Q", queues=0), "BAD_REQUEST"),
        "unknown message id": (lambda: b.QueryMessageById(broker_pb2.QueryByIdRequest(msg_id="nope"), timeout=5),
                               "MESSAGE_NOT_FOUND"),
    }
    for what, (fn, want) in cases.items():
        code, err = error_of(fn)
        assert err == want, (what, code, err)
        assert code != grpc.StatusCode.OK
    # malformed bytes on the wire: an error, and the broker keeps serving
    ch = grpc.insecure_channel(addr)
    raw = ch.unary_unary("/orbitmq.v1.Broker/SendMessage", request_serializer=None, response_deserializer=None)
    code, err = error_of(lambda: raw(b"\xff\xff\xff\xff garbage", timeout=5))
    assert (code, err) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST")
    # read-only topic
    create_topic(b, "RO", perm=4)
    assert error_of(lambda: send(b, "RO", [b"x"]))[1] == "NO_PERMISSION"
    # nothing stored was lost or added
    r = pull(b, "T", 0, 0)
    assert [m.body for m in r.messages] == [b"first", b"second"] and r.max_offset == 2
    assert pull(b, "T", 1, 0).max_offset == 0


def test_read_only_broker_refuses_writes(procs, tmp_path):
    _, addr = start_broker(procs, tmp_path, extra=["--set", "writable=false"])
    b = bstub(addr)
    code, err = error_of(lambda: send(b, "T", [b"x"]))
    assert err in ("TOPIC_NOT_FOUND", "NO_PERMISSION")
    _, addr2 = start_broker(procs, tmp_path, name="b-auto", extra=["--set", "auto_create_topics=true",
                                                                  "--set", "writable=false"])
    code, err = error_of(lambda: send(bstub(addr2), "Fresh", [b"x"]))
    assert (code, err) == (grpc.StatusCode.NOT_FOUND, "TOPIC_NOT_FOUND")  # read-only: never auto-creates


def test_auto_create_only_when_configured(procs, tmp_path):
    ns_addr = start_namesrv(procs)
    ns = nstub(ns_addr)
    _, addr = start_broker(procs, tmp_path, namesrv=ns_addr, extra=["--set", "auto_create_topics=true",
                                                                    "--set", "default_queues=2"])
    r = wait_until(lambda: route_of(ns, "Whatever"), 10, what="auto-create route")
    assert r.auto_created and r.queues[0].write_queues == 2
    b = bstub(addr)
    res = send(b, "Whatever", [b"hello"], queue_id=-1)
    assert res.results[0].queue_id in (0, 1)
    r2 = wait_until(lambda: (x := route_of(ns, "Whatever")) and not x.auto_created and x, 10, what="real route")
    assert r2.queues[0].read_queues == 2


def test_consumers_offsets_queries_and_admin(procs, tmp_path):
    _, addr = start_broker(procs, tmp_path)
    b = bstub(addr)
    create_topic(b, "T", queues=2)
    sent = send(b, "T", [b"a", b"b", b"c"], queue_id=1, tags="red", keys=["order-7"])
    send(b, "T", [b"d"], queue_id=1, tags="blue")
    ids = [r.msg_id for r in sent.results]
    assert len(set(ids)) == 3 and all(ids)
    # indexes are built by the dispatcher after the send returns: wait until it has reached the
    # last send (queue 1's max offset is 4 once all four are dispatched), then every read is settled
    wait_until(lambda: b.GetOffsetRange(broker_pb2.GetOffsetRangeRequest(topic="T", queue_id=1),
                                        timeout=5).max_offset == 4, 30, what="sends dispatched")
    got = b.QueryMessageById(broker_pb2.QueryByIdRequest(msg_id=ids[1]), timeout=5).messages
    assert [m.body for m in got] == [b"b"] and got[0].broker_set == "bs1"
    by_key = b.QueryMessageByKey(broker_pb2.QueryByKeyRequest(topic="T", key="order-7", max_messages=10), timeout=5)
    assert sorted(m.body for m in by_key.messages) == [b"a", b"b", b"c"]
    assert [m.body for m in pull(b, "T", 1, 0, tags="blue").messages] == [b"d"]
    rng = b.GetOffsetRange(broker_pb2.GetOffsetRangeRequest(topic="T", queue_id=1), timeout=5)
    assert (rng.min_offset, rng.max_offset) == (0, 4)
    # offsets
    assert b.QueryOffset(broker_pb2.QueryOffsetRequest(group="g1", topic="T", queue_id=1), timeout=5).offset == -1
    b.CommitOffset(broker_pb2.CommitOffsetRequest(group="g1", topic="T", queue_id=1, offset=3), timeout=5)
    assert b.QueryOffset(broker_pb2.QueryOffsetRequest(group="g1", topic="T", queue_id=1), timeout=5).offset == 3
    stats = b.GetConsumeStats(broker_pb2.GetConsumeStatsRequest(group="g1", topic="T"), timeout=5)
    lag = {q.queue_id: (q.broker_offset, q.consumer_offset, q.lag) for q in stats.queues}
    assert lag[1] == (4, 3, 1)
    # membership
    for cid in ("c2", "c1"):
        b.ConsumerHeartbeat(broker_pb2.ConsumerHeartbeatRequest(client_id=cid, group="g1", subscriptions=[
            broker_pb2.Subscription(topic="T", tag_expression="*")]), timeout=5)
    assert list(b.GetConsumerList(broker_pb2.GetConsumerListRequest(group="g1"), timeout=5).client_ids) == ["c1", "c2"]
    b.UnregisterConsumer(broker_pb2.UnregisterConsumerRequest(client_id="c1", group="g1"), timeout=5)
    assert list(b.GetConsumerList(broker_pb2.GetConsumerListRequest(group="g1"), timeout=5).client_ids) == ["c2"]
    # admin
    b.CreateSubscriptionGroup(broker_pb2.CreateSubscriptionGroupRequest(
        config=common_pb2.SubscriptionGroupConfig(group="g1", consume_enable=True)), timeout=5)
    b.DeleteSubscriptionGroup(broker_pb2.DeleteSubscriptionGroupRequest(group="g1"), timeout=5)
    assert [t.topic for t in b.ListTopics(broker_pb2.ListTopicsRequest(), timeout=5).topics] == ["T"]
    b.DeleteTopic(broker_pb2.DeleteTopicRequest(topic="T"), timeout=5)
    assert error_of(lambda: send(b, "T", [b"x"]))[1] == "TOPIC_NOT_FOUND"


def test_consumer_expires_when_silent(procs, tmp_path):
    _, addr = start_broker(procs, tmp_path, extra=["--set", "consumer_expire_s=1.0"])
    b = bstub(addr)
    b.ConsumerHeartbeat(broker_pb2.ConsumerHeartbeatRequest(client_id="c1", group="g1"), timeout=5)
    assert list(b.GetConsumerList(broker_pb2.GetConsumerListRequest(group="g1"), timeout=5).client_ids) == ["c1"]
    wait_until(lambda: not b.GetConsumerList(broker_pb2.GetConsumerListRequest(group="g1"), timeout=5).client_ids,
               5, what="silent consumer expired")


def test_long_poll_returns_promptly_when_a_message_arrives(procs, tmp_path):
    _, addr = start_broker(procs, tmp_path)
    b = bstub(addr)
    create_topic(b, "LP", queues=1)
    t0 = time.monotonic()
    r = pull(b, "LP", 0, 0, poll_ms=300)
    assert r.status == broker_pb2.PULL_NO_NEW_MSG and 0.25 < time.monotonic() - t0 < 5
    out: dict = {}

    def waiter() -> None:
        out["start"] = time.monotonic()
        out["resp"] = pull(b, "LP", 0, 0, poll_ms=20000)
        out["end"] = time.monotonic()

    th = threading.Thread(target=waiter)
    th.start()

    def parked() -> bool:
        st = b.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=5)
        return st.stats["parked_pulls"] == "1"
    wait_until(parked, 20, what="the 20 s pull parked on the broker")
    sent_at = time.monotonic()
    send(b, "LP", [b"wake"])
    th.join(25)
    assert not th.is_alive()
    assert out["resp"].status == broker_pb2.PULL_FOUND and [m.body for m in out["resp"].messages] == [b"wake"]
    assert out["end"] - sent_at < 10.0  # woken by the dispatch, not by the 20 s timeout


def test_restart_loses_no_flushed_message(procs, tmp_path):
    addr = f"127.0.0.1:{net.free_port()}"
    child, _ = start_broker(procs, tmp_path, addr=addr, extra=["--set", "flush_mode=sync"])
    b = bstub(addr)
    create_topic(b, "D", queues=2)
    bodies = [f"m{i}".encode() for i in range(50)]
    for i in range(0, 50, 10):
        send(b, "D", bodies[i:i + 10], queue_id=0)
    child.kill9()  # acknowledged in sync mode = flushed: must survive even SIGKILL
    child2, _ = start_broker(procs, tmp_path, addr=addr, extra=["--set", "flush_mode=sync"])
    b = bstub(addr)
    r = wait_until(lambda: pull(b, "D", 0, 0, n=100), 10, what="pull after restart")
    assert [m.body for m in r.messages] == bodies
    send(b, "D", [b"after"], queue_id=0)
    assert child2.stop() == 0  # SIGTERM: clean exit
    start_broker(procs, tmp_path, addr=addr)
    b = bstub(addr)
    r = wait_until(lambda: pull(b, "D", 0, 0, n=100), 10, what="pull after clean restart")
    assert [m.body for m in r.messages] == [*bodies, b"after"]


@pytest.mark.parametrize("field, value", [("reconsume_times", -1), ("flags", -5), ("sys_flag", -2)])
def test_out_of_range_numbers_get_bad_request_and_use_no_offset(procs, tmp_path, field, value):
    _, addr = start_broker(procs, tmp_path)
    b = bstub(addr)
    create_topic(b, "N", queues=1)
    bad = broker_pb2.SendRequest(topic="N", queue_id=0, messages=[common_pb2.Message(topic="N", body=b"x",
                                                                                     **{field: value})])
    code, name = error_of(lambda: b.SendMessage(bad, timeout=10))
    assert (code, name) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST")
    assert send(b, "N", [b"good"]).results[0].queue_offset == 0


def test_topic_changes_are_routable_when_the_call_returns(procs, tmp_path):
    """CreateTopic/DeleteTopic answer once every name server has the change (sent as a delta), so no
    client has to poll for it; a restarted name server gets everything again in full."""
    ns1 = start_namesrv(procs, name="ns1")
    ns2_addr = f"127.0.0.1:{net.free_port()}"
    ns2_argv = ["namesrv", "--listen", ns2_addr, "--set", "scan_interval_s=0.2"]
    ns2_proc = procs.start("ns2", ns2_argv)
    net.wait_for_port(ns2_addr, 30)
    _, addr = start_broker(procs, tmp_path, namesrv=f"{ns1},{ns2_addr}")
    b, n1, n2 = bstub(addr), nstub(ns1), nstub(ns2_addr)
    wait_until(lambda: all(s.GetClusterInfo(namesrv_pb2.GetClusterInfoRequest(), timeout=5).clusters for s in (n1, n2)),
               20, what="broker registered with both name servers")
    for i in range(20):
        create_topic(b, f"Fast{i}", queues=1 + i % 3)
        for s in (n1, n2):   # no wait: routable the moment CreateTopic returned
            assert route_of(s, f"Fast{i}").queues[0].write_queues == 1 + i % 3
    b.DeleteTopic(broker_pb2.DeleteTopicRequest(topic="Fast3"), timeout=10)
    assert route_gone(n1, "Fast3") and route_gone(n2, "Fast3")

    ns2_proc.kill9()                            # loses every registration: the next delta has no base
    procs.start("ns2-again", ns2_argv)
    net.wait_for_port(ns2_addr, 30)
    n2 = nstub(ns2_addr)
    wait_until(lambda: not route_gone(n2, "Fast19"), 30, what="the restarted name server has the topics again")
    create_topic(b, "AfterRestart")
    for s in (n1, n2):
        assert route_of(s, "AfterRestart")
        topics = set(s.GetTopicList(namesrv_pb2.GetTopicListRequest(cluster="c1"), timeout=5).topics)
        assert topics == {f"Fast{i}" for i in range(20) if i != 3} | {"AfterRestart"}
