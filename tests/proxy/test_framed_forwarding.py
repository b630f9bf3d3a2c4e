"""Cluster mode forwards sends to a master over its framed port when the routes announce one
(proxy/framed_client.py), over gRPC otherwise, and falls back to gRPC when the framed port it knew
is gone (a restarted broker listens on a new one): every send still gets its receipt, and every
message is stored once. Driven by the official RocketMQ 5 Python client unchanged."""

from __future__ import annotations

import pytest

from tests.proxy.test_cluster_mode import cluster, start_cluster_proxy  # noqa: F401 - the fixture
from tests.proxy.test_send_batching import _stored

pytestmark = pytest.mark.process


def _framed_calls(namesrv: str) -> dict[str, int]:
    """broker set -> framed calls its master has served (GetBrokerStatus stats)."""
    from orbitmq.client import Admin

    with Admin(namesrv) as admin:
        return {row.broker_set: int(admin.broker_status(row.master_address)["stats"].get("framed_calls", 0))
                for row in admin.cluster_list()}


def test_sends_go_framed_where_announced_and_survive_a_changed_framed_port(cluster, procs, rmq):  # noqa: F811
    _child, ep = start_cluster_proxy(procs, cluster.namesrv)
    p = rmq.start(rmq.mod.Producer(rmq.config(ep), ("orders",)))
    before = _framed_calls(cluster.namesrv)
    receipts = [p.send(rmq.message("orders", f"m{i}".encode())) for i in range(40)]
    after = _framed_calls(cluster.namesrv)
    assert after["broker-a"] - before["broker-a"] >= 10     # round robin: about half went to broker-a, framed
    assert after["broker-b"] == 0                            # no framed port: gRPC only

    cluster.restart_broker("broker-a")   # remoting_listen=...:0: a new framed port the proxy does not know yet
    receipts += [p.send(rmq.message("orders", f"n{i}".encode())) for i in range(40)]
    ids = [r.message_id for r in receipts]
    assert len(set(ids)) == len(ids) == 80
    stored = _stored(cluster.namesrv, len(ids))
    assert set(ids) <= set(stored)
    for r in receipts:      # each send answered with the offset its own message was stored at
        assert stored[r.message_id][2] == int(r.offset)
