"""The pure route table: registration, expiry, unregister, keep-alive streams, epoch fencing, routes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.namesrv.routes import (
    Registration,
    RouteTable,
    StaleEpochError,
    TopicInfo,
    TopicNotFoundError,
)

T = TopicInfo("orders", 4, 4, 6)


def reg(bset: str = "bs1", bid: int = 0, *, master: bool = True, epoch: int = 1, topics=(T,),
        inst: str = "i0", cluster: str = "c1", **kw) -> Registration:
    return Registration(cluster=cluster, broker_set=bset, broker_id=bid, address=f"127.0.0.1:{1000 + bid}",
                        instance_id=inst, ha_address=f"127.0.0.1:{2000 + bid}", is_master=master, epoch=epoch,
                        topics=tuple(topics), **kw)


def test_register_then_route_lists_queues_and_replicas():
    t = RouteTable(default_expire_s=120)
    t.register(reg(bid=0), 0.0)
    info = t.register(reg(bid=1, master=False), 0.0)
    assert info.master_id == 0 and info.master_ha_address == "127.0.0.1:2000"
    r = t.route("orders", 1.0)
    assert [(q.broker_set, q.read_queues, q.write_queues, q.perm) for q in r.queues] == [("bs1", 4, 4, 6)]
    assert r.broker_sets[0].replicas == {0: "127.0.0.1:1000", 1: "127.0.0.1:1001"}
    assert r.broker_sets[0].master_address == "127.0.0.1:1000" and not r.auto_created


def test_entry_expires_after_default_or_own_expiry():
    t = RouteTable(default_expire_s=10)
    t.register(reg(bid=0), 0.0)
    t.register(reg(bid=1, master=False, expire_after_s=3), 0.0)
    assert set(t.route("orders", 3.0).broker_sets[0].replicas) == {0, 1}
    assert set(t.route("orders", 3.5).broker_sets[0].replicas) == {0}
    t.register(reg(bid=0), 9.0)  # refresh
    assert t.route("orders", 18.9).broker_sets[0].master_id == 0
    with pytest.raises(TopicNotFoundError):
        t.route("orders", 19.5)
    assert t.cluster_info(19.5) == {}


def test_unregister_drops_at_once_but_not_a_newer_instance():
    t = RouteTable()
    t.register(reg(inst="new"), 0.0)
    assert not t.unregister("bs1", 0, 1.0, instance_id="old")
    assert t.unregister("bs1", 0, 1.0, instance_id="new")
    with pytest.raises(TopicNotFoundError):
        t.route("orders", 1.0)


def test_broken_stream_drops_entry_only_if_it_is_the_newest():
    t = RouteTable()
    t.register(reg(inst="a"), 0.0)
    tok, need = t.stream_opened("bs1", 0, "a")
    assert not need
    tok2, _ = t.stream_opened("bs1", 0, "a")  # reconnect: a newer stream
    assert not t.stream_closed("bs1", 0, "a", tok)
    assert t.route("orders", 1.0).queues
    assert t.stream_closed("bs1", 0, "a", tok2)
    with pytest.raises(TopicNotFoundError):
        t.route("orders", 1.0)


def test_broken_stream_of_old_instance_keeps_restarted_broker():
    t = RouteTable()
    t.register(reg(inst="a"), 0.0)
    tok, _ = t.stream_opened("bs1", 0, "a")
    t.register(reg(inst="b"), 1.0)  # restarted before the old stream's break was noticed
    assert not t.stream_closed("bs1", 0, "a", tok)
    assert t.route("orders", 2.0).broker_sets[0].master_id == 0


def test_stream_before_registration_asks_to_register_then_attaches():
    t = RouteTable()
    tok, need = t.stream_opened("bs1", 0, "a")
    assert need
    t.register(reg(inst="a"), 0.0)
    assert t.stream_attach("bs1", 0, "a", tok) is False
    assert t.stream_closed("bs1", 0, "a", tok)
    assert t.alive(0.0) == []


def test_stale_master_rejected_and_dropped_newer_master_demotes_old():
    t = RouteTable()
    t.register(reg(bid=0, epoch=2), 0.0)
    t.register(reg(bid=1, master=False, epoch=2), 0.0)
    with pytest.raises(StaleEpochError):
        t.register(reg(bid=1, epoch=1), 1.0)
    assert set(t.route("orders", 1.0).broker_sets[0].replicas) == {0}
    with pytest.raises(StaleEpochError):  # same epoch, another id: two masters never coexist
        t.register(reg(bid=2, epoch=2), 1.0)
    info = t.register(reg(bid=2, epoch=3), 2.0)  # elected: higher epoch
    assert info.master_id == 2 and info.epoch == 3
    assert set(t.route("orders", 2.0).broker_sets[0].replicas) == {2}  # old master fenced out
    with pytest.raises(StaleEpochError):
        t.register(reg(bid=0, epoch=2), 3.0)
    t.register(reg(bid=0, master=False, epoch=3), 3.0)  # rejoins as a follower
    bs = t.route("orders", 3.0).broker_sets[0]
    assert bs.master_id == 2 and set(bs.replicas) == {0, 2}


def test_read_only_broker_route_has_no_write_permission_and_follower_serves_when_master_gone():
    t = RouteTable()
    t.register(reg(bid=0, writable=False), 0.0)
    assert t.route("orders", 0.0).queues[0].perm == 4
    t2 = RouteTable(default_expire_s=5)
    t2.register(reg(bid=0), 0.0)
    t2.register(reg(bid=1, master=False, topics=(TopicInfo("orders", 8, 8, 6),)), 4.0)
    assert t2.route("orders", 4.0).queues[0].read_queues == 4  # the master's config wins
    r = t2.route("orders", 6.0)
    assert r.queues[0].read_queues == 8 and r.broker_sets[0].master_id == -1


def test_auto_create_route_only_from_writable_masters_that_allow_it():
    t = RouteTable()
    t.register(reg("bs1", topics=()), 0.0)
    with pytest.raises(TopicNotFoundError):
        t.route("newtopic", 0.0)
    t.register(reg("bs2", auto_create_topics=True, default_queues=3, topics=()), 0.0)
    t.register(reg("bs3", auto_create_topics=True, writable=False, topics=()), 0.0)
    r = t.route("newtopic", 0.0)
    assert r.auto_created and [(q.broker_set, q.write_queues) for q in r.queues] == [("bs2", 3)]


def test_cluster_info_and_topic_list_by_cluster():
    t = RouteTable()
    t.register(reg("bs1", cluster="A"), 0.0)
    t.register(reg("bs2", cluster="B", topics=(TopicInfo("x", 1, 1, 6),)), 0.0)
    ci = t.cluster_info(0.0)
    assert {k: [s.broker_set for s in v] for k, v in ci.items()} == {"A": ["bs1"], "B": ["bs2"]}
    assert t.topics(0.0) == ["orders", "x"] and t.topics(0.0, "B") == ["x"]


ops = st.lists(st.tuples(
    st.sampled_from(["reg", "unreg", "open", "close", "tick"]),
    st.integers(0, 2), st.integers(0, 3), st.sampled_from(["a", "b"]), st.booleans()), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_invariants_under_any_sequence(seq):
    """At most one master per set, masters' epochs never go down while alive, and no expired entry shows."""
    t = RouteTable(default_expire_s=10)
    now = 0.0
    tokens: list[tuple[int, str, int]] = []
    last_seen: dict[int, float] = {}
    for op, bid, epoch, inst, master in seq:
        if op == "reg":
            before = t.cluster_info(now)
            try:
                t.register(reg(bid=bid, epoch=epoch, inst=inst, master=master), now)
                last_seen[bid] = now
            except StaleEpochError:
                sets = before.get("c1", [])
                assert sets and sets[0].master_id not in (-1, bid) and sets[0].epoch >= epoch
        elif op == "unreg":
            t.unregister("bs1", bid, now, inst)
        elif op == "open":
            tok, _ = t.stream_opened("bs1", bid, inst)
            tokens.append((bid, inst, tok))
        elif op == "close" and tokens:
            b, i, tok = tokens.pop(0)
            t.stream_closed("bs1", b, i, tok)
        else:
            now += 4.0
        for r in t.alive(now):
            assert now - last_seen[r.broker_id] <= 10
        masters = [r for r in t.alive(now) if r.is_master]
        assert len(masters) <= 1


# ---- delta registrations -----------------------------------------------------------------------------

def test_delta_without_a_base_changes_nothing():
    t = RouteTable(default_expire_s=120)
    assert t.register_delta(reg(topics=[TopicInfo("a", 1, 1, 6)]), (), 0.0) is None
    with pytest.raises(TopicNotFoundError):
        t.route("a", 0.0)
    t.register(reg(inst="i0"), 0.0)
    # another instance (a restarted broker) cannot patch the old one's entry either
    assert t.register_delta(reg(inst="i1", topics=[TopicInfo("a", 1, 1, 6)]), (), 0.0) is None
    with pytest.raises(TopicNotFoundError):
        t.route("a", 0.0)


def test_delta_keeps_fencing_and_refreshes_liveness():
    t = RouteTable(default_expire_s=10)
    t.register(reg(bid=0, epoch=2), 0.0)
    t.register(reg(bid=1, master=False, epoch=2), 0.0)
    with pytest.raises(StaleEpochError):   # a delta claiming mastership at a stale epoch is fenced too
        t.register_delta(reg(bid=1, master=True, epoch=1, topics=[]), (), 1.0)
    assert t.register_delta(reg(bid=0, epoch=2, topics=[]), (), 9.0) is not None
    assert t.route("orders", 15.0).broker_sets[0].master_id == 0   # refreshed at 9: alive at 15


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "del"]), st.sampled_from("abcdef"), st.integers(1, 16)),
                max_size=30))
def test_deltas_equal_a_full_registration_of_the_same_topics(changes):
    """Applying any sequence of deltas gives the same routes as registering the final topic set."""
    delta_t, full_t = RouteTable(), RouteTable()
    delta_t.register(reg(topics=[]), 0.0)
    current: dict[str, TopicInfo] = {}
    for i, (op, name, n) in enumerate(changes):
        if op == "put":
            current[name] = TopicInfo(name, n, n, 6)
            assert delta_t.register_delta(reg(topics=[current[name]]), (), float(i)) is not None
        else:
            current.pop(name, None)
            assert delta_t.register_delta(reg(topics=[]), (name,), float(i)) is not None
    full_t.register(reg(topics=list(current.values())), float(len(changes)))
    now = float(len(changes))
    assert delta_t.topics(now) == full_t.topics(now) == sorted(current)
    for name in "abcdef":
        if name in current:
            assert delta_t.route(name, now).queues == full_t.route(name, now).queues
        else:
            with pytest.raises(TopicNotFoundError):
                delta_t.route(name, now)
