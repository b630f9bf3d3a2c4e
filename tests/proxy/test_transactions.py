"""Transactional messages with the official RocketMQ 5 Python client against `orbitmq proxy` (local mode):
commit, rollback, and an orphaned transaction resolved through a Telemetry check, across a proxy kill."""

from __future__ import annotations

import threading

import pytest

from tests.proxy.conftest import receive_until

pytestmark = pytest.mark.process


def tx_producer(rmq, ep, topic, resolution):
    checked = []
    lock = threading.Lock()

    class Checker(rmq.mod.TransactionChecker):
        def check(self, message):
            with lock:
                checked.append(message.body)
            return resolution

    p = rmq.start(rmq.mod.Producer(rmq.config(ep), (topic,), Checker()))
    return p, checked


def test_commit_and_rollback(start_proxy, rmq):
    ep = start_proxy("--auto-create-topics", "--set", "tx_check_after_s=60").addr
    p, _ = tx_producer(rmq, ep, "pay", rmq.mod.TransactionResolution.ROLLBACK)
    c = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g", {"pay": rmq.mod.FilterExpression()}, 2))
    t1 = p.begin_transaction()
    p.send(rmq.message("pay", b"commit-me"), t1)
    t2 = p.begin_transaction()
    p.send(rmq.message("pay", b"roll-me-back"), t2)
    assert c.receive(16, 30) == []  # half messages are invisible
    t1.commit()
    t2.rollback()
    got = receive_until(c, 1, 60)
    assert [m.body for m in got] == [b"commit-me"]
    assert c.receive(16, 30) == []  # the rolled-back one never shows


def test_orphaned_transaction_is_checked_over_telemetry(start_proxy, rmq):
    ep = start_proxy("--auto-create-topics", "--set", "tx_check_after_s=2").addr
    p, checked = tx_producer(rmq, ep, "orphans", rmq.mod.TransactionResolution.COMMIT)
    t = p.begin_transaction()
    p.send(rmq.message("orphans", b"resolve-me"), t)  # neither committed nor rolled back
    c = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g", {"orphans": rmq.mod.FilterExpression()}, 2))
    got = receive_until(c, 1, 120)
    assert [m.body for m in got] == [b"resolve-me"] and checked == [b"resolve-me"]


def test_orphan_survives_a_proxy_kill_and_is_resolved_by_a_new_producer(start_proxy, rmq):
    """The producer that sent the half message is gone and the proxy is killed: the open transaction is
    in the log, and after the restart a new producer of the topic gets the check (the official Python
    client re-opens a broken Telemetry stream only every 300 s, so a new instance is what resolves it)."""
    px = start_proxy("--auto-create-topics", "--set", "tx_check_after_s=3")
    ep = px.addr
    p1, checked1 = tx_producer(rmq, ep, "orphans", rmq.mod.TransactionResolution.ROLLBACK)
    p1.send(rmq.message("orphans", b"resolve-me"), p1.begin_transaction())
    p1.shutdown()
    px.stop(kill=True)
    px.start()
    _p2, checked2 = tx_producer(rmq, ep, "orphans", rmq.mod.TransactionResolution.COMMIT)
    c = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g", {"orphans": rmq.mod.FilterExpression()}, 2))
    got = receive_until(c, 1, 120)
    assert [m.body for m in got] == [b"resolve-me"]
    assert checked2 and not checked1
