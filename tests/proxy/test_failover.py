"""Pop state across a master failover: 3 controllers, a name server, one broker set of 3 replicas
(controller mode), `orbitmq proxy --mode cluster`, the official Python client. kill -9 of the
master in the middle of consumption: every message is delivered at least once afterwards, with
the messages acknowledged before the kill not delivered again (a broker answers an ack once the
sync-state-set holds it), and a scheduled message fires."""

from __future__ import annotations

import time

import pytest

from orbitmq.common import net, proc
from orbitmq.common.local_cluster import ClusterSpec, LocalCluster
from tests.proxy.conftest import receive_until

pytestmark = pytest.mark.process


@pytest.fixture
def ha(tmp_path):
    spec = ClusterSpec(dir=str(tmp_path / "c"), broker_sets=["broker-a"], replicas=3, learners=0, namesrvs=1,
                       broker_settings={"register_interval_s": "1", "ha_max_lag_s": "3.0"})
    c = LocalCluster(spec)
    try:
        c.start()
        c.wait_ready(120)
        yield c
    except BaseException:
        print(c.logs(60))
        raise
    finally:
        c.stop()


def test_pop_state_and_timer_survive_a_master_failover(ha, procs, rmq):
    from orbitmq.client import Admin

    with Admin(ha.namesrv_addrs[0]) as admin:
        admin.create_topic("ha-orders", queues=2)
    ep = f"127.0.0.1:{net.free_port()}"
    procs.start("proxy", ["proxy", "--mode", "cluster", "--namesrv", ha.namesrv_addrs[0], "--listen", ep])
    net.wait_for_port(ep, 60)
    p = rmq.start(rmq.mod.Producer(rmq.config(ep), ("ha-orders",)))
    bodies = {f"h{i}".encode() for i in range(30)}
    for b in sorted(bodies):
        p.send(rmq.message("ha-orders", b))
    at = int(time.time()) + 8
    p.send(rmq.message("ha-orders", b"scheduled", delivery_timestamp=at))
    c = rmq.start(rmq.mod.SimpleConsumer(rmq.config(ep), "g-ha", {"ha-orders": rmq.mod.FilterExpression()}, 3))
    acked = {m.body for m in receive_until(c, 10, 90, batch=4)}
    assert len(acked) >= 10
    old = ha.master_of("broker-a")
    ha.kill9(old)  # an acknowledgement is answered once the sync-state-set holds it
    proc.wait_until(lambda: ha.master_of("broker-a") not in (None, old), 60, 0.2, "a new master")
    rest = set()
    deadline = time.monotonic() + 180
    while (rest | acked) != bodies | {b"scheduled"} and time.monotonic() < deadline:
        try:
            for m in c.receive(16, 10):
                rest.add(m.body)
                c.ack(m)
        except Exception:  # noqa: BLE001 - errors while the master moves
            time.sleep(0.5)
    assert rest | acked == bodies | {b"scheduled"}
    assert not (rest & acked)
    assert time.time() >= at - 0.01
