"""Delivery guarantees on real processes: namesrv, brokers, `orbitmq produce` and `orbitmq consume`
(each a separate OS process on loopback), bounded in time."""

from __future__ import annotations

from collections import Counter

import pytest

from orbitmq.client import Admin
from orbitmq.common.proc import wait_until

pytestmark = pytest.mark.process


def test_clustering_three_consumers_exactly_once_and_second_group_gets_all(cluster):
    cluster.start_broker("bs1")
    cluster.start_broker("bs2")
    cluster.create_topic("Orders", 4)          # 4 queues on each broker set: 8 in all
    consumers = [cluster.consume("g1", "Orders", f"c{i}") for i in range(3)]
    cluster.wait_stable([c for c, _ in consumers], 8, "g1")
    prod, ids_file = cluster.produce("Orders", 10_000, extra=["--mode", "async", "--size", "200"])
    assert cluster.wait_exit(prod, 90) == 0, cluster.summary(prod)
    sent = cluster.read_ids(ids_file)
    assert len(sent) == 10_000 and len(set(sent)) == 10_000

    def all_consumed():
        return sum(len(cluster.read_ids(out)) for _, out in consumers) >= 10_000
    wait_until(all_consumed, 90, what="10,000 messages consumed by group g1")
    with Admin(cluster.namesrv) as admin:   # every queue committed at its end: nothing left to (re)deliver
        wait_until(lambda: all(q.lag == 0 for q in admin.consumer_progress("g1", "Orders")), 60,
                   what="group g1 committed every queue to its end")
    for c, _ in consumers:
        c.stop()
    got = [i for _, out in consumers for i in cluster.read_ids(out)]
    dups = [k for k, v in Counter(got).items() if v > 1]
    assert not dups, f"{len(dups)} messages consumed twice in a stable group"
    assert set(got) == set(sent)
    assert all(cluster.read_ids(out) for _, out in consumers), "every consumer got a share"

    # a second group (lite pull consumer this time) sees every message too
    c2, out2 = cluster.consume("g2", "Orders", "g2-pull", ["--mode", "pull", "--count", "10000"])
    assert cluster.wait_exit(c2, 90) == 0
    got2 = cluster.read_ids(out2)
    assert set(got2) == set(sent)


def test_rebalance_when_a_consumer_joins_and_one_is_killed(cluster):
    cluster.start_broker("bs1")
    cluster.create_topic("Events", 6)
    a, out_a = cluster.consume("g", "Events", "a")
    b, out_b = cluster.consume("g", "Events", "b")
    cluster.wait_stable([a, b], 6, "g")
    prod, ids_file = cluster.produce("Events", 4000, extra=["--rate", "800", "--mode", "async"])
    wait_until(lambda: cluster.read_ids(out_a) or cluster.read_ids(out_b), 30,
               what="messages flowing to the first two members")
    c, out_c = cluster.consume("g", "Events", "c")           # joins while messages flow
    cluster.wait_stable([a, b, c], 6, "g", timeout=20)
    b.kill9()                                                  # dies without leaving the group
    assert cluster.wait_exit(prod, 60) == 0, cluster.summary(prod)
    sent = set(cluster.read_ids(ids_file))
    assert len(sent) == 4000
    cluster.wait_stable([a, c], 6, "g", timeout=30)                         # b expired from the group: its queues moved

    def covered():
        return sent <= set(cluster.read_ids(out_a)) | set(cluster.read_ids(out_b)) | set(cluster.read_ids(out_c))
    wait_until(covered, 60, what="every message consumed after the rebalance")
    assert cluster.read_ids(out_c), "the member that joined got a share"


def test_broadcasting_delivers_every_message_to_every_member(cluster, tmp_path):
    cluster.start_broker("bs1")
    cluster.create_topic("News", 4)
    members = [cluster.consume("bc", "News", f"m{i}", ["--broadcast", "--offset-file", str(tmp_path / f"m{i}.json")])
               for i in range(2)]
    for c, _ in members:
        wait_until(lambda c=c: c.log_path.exists() and "ASSIGNMENT" in c.log_path.read_text(), 20,
                   what="broadcast member started")
    prod, ids_file = cluster.produce("News", 2000, extra=["--mode", "batch", "--batch", "50"])
    assert cluster.wait_exit(prod, 60) == 0
    sent = set(cluster.read_ids(ids_file))
    assert len(sent) == 2000
    for _c, out in members:
        wait_until(lambda out=out: set(cluster.read_ids(out)) >= sent, 60, what="every member has every message")
    for c, _ in members:
        c.stop()
    for _c, out in members:
        got = cluster.read_ids(out)
        assert set(got) == sent and len(got) == len(sent)
    # the offsets live in each member's own file: a restarted member resumes there (nothing new to read)
    again, out_again = cluster.consume("bc", "News", "m0-again",
                                       ["--broadcast", "--offset-file", str(tmp_path / "m0.json"), "--idle-exit", "3"])
    assert cluster.wait_exit(again, 30) == 0
    assert cluster.read_ids(out_again) == []


def test_broker_restart_keeps_flushed_messages_and_committed_offsets(cluster):
    cluster.start_broker("bs1", ["--set", "flush_mode=sync"])
    cluster.create_topic("Ledger", 4)
    prod, ids1 = cluster.produce("Ledger", 2000, extra=["--mode", "batch", "--batch", "20"])
    assert cluster.wait_exit(prod, 60) == 0
    first = set(cluster.read_ids(ids1))
    c1, out1 = cluster.consume("ledger", "Ledger", "first", ["--count", "2000"])
    assert cluster.wait_exit(c1, 60) == 0
    assert set(cluster.read_ids(out1)) == first

    cluster.restart_broker("bs1")                              # graceful restart
    prod, ids2 = cluster.produce("Ledger", 1000, name="producer2", extra=["--mode", "async"])
    assert cluster.wait_exit(prod, 60) == 0
    second = set(cluster.read_ids(ids2))
    assert len(second) == 1000
    c2, out2 = cluster.consume("ledger", "Ledger", "second", ["--idle-exit", "4"])
    assert cluster.wait_exit(c2, 60) == 0
    assert set(cluster.read_ids(out2)) == second, "resumed exactly at the committed offsets"

    cluster.restart_broker("bs1", kill=True)                   # SIGKILL: acknowledged sync-flushed data stays
    c3, out3 = cluster.consume("fresh", "Ledger", "fresh", ["--count", "3000"])
    assert cluster.wait_exit(c3, 60) == 0
    assert set(cluster.read_ids(out3)) == first | second


def test_running_consumer_survives_a_broker_restart(cluster):
    cluster.start_broker("bs1", ["--set", "flush_mode=sync"])
    cluster.create_topic("Survive", 4)
    c, out = cluster.consume("survivor", "Survive", "survivor")
    cluster.wait_stable([c], 4, "survivor")
    prod, ids1 = cluster.produce("Survive", 500, extra=["--mode", "batch", "--batch", "25"])
    assert cluster.wait_exit(prod, 60) == 0
    cluster.restart_broker("bs1", kill=True)
    prod, ids2 = cluster.produce("Survive", 500, name="producer2", extra=["--mode", "batch", "--batch", "25"])
    assert cluster.wait_exit(prod, 60) == 0
    sent = set(cluster.read_ids(ids1)) | set(cluster.read_ids(ids2))
    assert len(sent) == 1000
    wait_until(lambda: set(cluster.read_ids(out)) >= sent, 60, what="the same consumer process got everything")
    assert c.alive()
