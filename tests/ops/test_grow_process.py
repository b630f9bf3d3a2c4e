"""Growing a running cluster, on real processes.

`orbitmq cluster up` starts 3 controllers, a name server and broker set broker-a; a producer
sends without pause and two pull consumers of one group read, while: a second broker set
(broker-b) is started from its own TOML file pointing at the same name server and controllers,
`orbitmq admin topic update T --broker-sets broker-a,broker-b` extends the topic to it, and
`--queues 4` raises its queue count; `--queues 2` is refused. Nobody is restarted: the producer's
sends reach every new queue of both sets, the consumers' rebalance covers them, and every
acknowledged message is consumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest

from orbitmq.chaos.cluster_config import to_toml
from orbitmq.client import Message, Producer
from orbitmq.client.pull_consumer import PullConsumer
from orbitmq.common import net, proc

pytestmark = pytest.mark.process

T = 120
TOPIC = "grow"


def orbit(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run(proc.orbitmq_argv(*args), capture_output=True, text=True, timeout=timeout)


def new_set_config(cluster_dir: Path, template: str, broker_set: str) -> Path:
    """broker_set's one replica: the template broker's TOML with its own name, ports and store."""
    cfg = tomllib.loads((cluster_dir / "conf" / f"{template}.toml").read_text())
    port, ha = net.free_ports(2)
    host = cfg["listen"].rsplit(":", 1)[0]
    cfg.update(broker_set=broker_set, broker_id=0, listen=f"{host}:{port}", ha_listen=f"{host}:{ha}",
               ha_address=f"{host}:{ha}", store_dir=str(cluster_dir / f"{broker_set}-1"))
    path = cluster_dir / f"{broker_set}-1.toml"
    path.write_text(to_toml(cfg))
    return path


@pytest.fixture
def cluster(tmp_path):
    d = tmp_path / "c"
    conf = tmp_path / "cluster.toml"
    conf.write_text('[cluster]\nbroker_sets = ["broker-a"]\nreplicas = 1\nlearners = 0\nnamesrvs = 1\n'
                    '[cluster.broker_settings]\nregister_interval_s = "2"\n')
    r = orbit("cluster", "up", "--dir", str(d), "--config", str(conf))
    assert r.returncode == 0, r.stdout + r.stderr
    children: list[proc.Child] = []
    try:
        yield d, children
    finally:
        proc.stop_all(children, timeout=10)
        orbit("cluster", "down", "--dir", str(d), timeout=120)


def env_of(d: Path) -> dict[str, str]:
    env = dict(os.environ)
    for line in (d / "cluster.env").read_text().splitlines():
        line = line.removeprefix("export ").strip()
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v.strip("'\"")
    return env


def admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(proc.orbitmq_argv("admin", *args), capture_output=True, text=True, timeout=120, env=env)


def test_add_a_broker_set_extend_a_topic_and_raise_its_queues_online(cluster):
    d, children = cluster
    env = env_of(d)
    namesrv = env["ORBITMQ_NAMESRV"]
    r = admin(env, "topic", "create", TOPIC, "--queues", "2")
    assert r.returncode == 0, r.stderr

    acked: dict[str, tuple[str, int]] = {}      # key -> (broker set, queue id)
    consumed: set[str] = set()
    owned: list[set] = [set(), set()]
    stop, stop_consumers = threading.Event(), threading.Event()
    errors: list[str] = []

    def produce() -> None:
        with Producer(namesrv, route_refresh_s=1.0) as p:
            i = 0
            end = time.monotonic() + 600          # bounded: the test stops it long before
            while not stop.is_set() and time.monotonic() < end and i < 100_000:
                key = f"k{i:06d}"
                try:
                    rc = p.send(Message(TOPIC, key.encode(), keys=[key]))
                    acked[key] = (rc.broker_set, rc.queue_id)
                except Exception as e:  # noqa: BLE001 - counted; the test asserts there were none
                    errors.append(f"{key}: {e}")
                i += 1
                time.sleep(0.01)

    def consume(n: int, c: PullConsumer) -> None:
        end = time.monotonic() + 900               # bounded
        while not stop_consumers.is_set() and time.monotonic() < end:
            for m in c.poll(0.5):
                consumed.add(m.body.decode())

    consumers = [PullConsumer("grow-g", namesrv, route_refresh_s=1.0, rebalance_interval_s=0.5,
                              on_rebalance=lambda qs, n=n: owned[n].clear() or owned[n].update(qs))
                 for n in range(2)]
    for c in consumers:
        c.subscribe(TOPIC)
    threads = [threading.Thread(target=produce)] + [threading.Thread(target=consume, args=(n, c))
                                                    for n, c in enumerate(consumers)]
    for t in threads:
        t.start()
    try:
        proc.wait_until(lambda: len(acked) >= 50, T, 0.2, "first sends")

        # -- a new broker set joins the running cluster --
        conf = new_set_config(d, "broker-a-1", "broker-b")
        b = proc.start("broker-b-1", proc.orbitmq_argv("broker", "--config", str(conf)), log_path=d / "broker-b-1.log")
        children.append(b)

        def b_has_master() -> bool:
            r = admin(env, "cluster", "list", "--json")
            return r.returncode == 0 and any(row.get("broker_set") == "broker-b" and row.get("master_address")
                                             for row in json.loads(r.stdout))
        proc.wait_until(b_has_master, T, 0.5, "broker-b has a master in the routes")

        # -- the topic is extended to it --
        r = admin(env, "topic", "update", TOPIC, "--broker-sets", "broker-a,broker-b", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["extended_to"] == ["broker-b"]
        assert {(s["broker_set"], s["write_queues"]) for s in out["broker_sets"]} == {("broker-a", 2), ("broker-b", 2)}
        proc.wait_until(lambda: {bs for bs, _ in list(acked.values())[-200:]} == {"broker-a", "broker-b"}, T, 0.2,
                        "the producer spreads over both sets without a restart")

        # -- its queue count is raised online; lowering it is refused --
        r = admin(env, "topic", "update", TOPIC, "--queues", "4")
        assert r.returncode == 0, r.stderr
        assert "broker-a" in r.stdout and "broker-b" in r.stdout
        r = admin(env, "topic", "update", TOPIC, "--queues", "2")
        assert r.returncode == 1 and "only grow" in r.stderr and "read_queues 4 -> 2" in r.stderr, r.stderr
        want = {(bs, q) for bs in ("broker-a", "broker-b") for q in range(4)}
        proc.wait_until(lambda: set(list(acked.values())[-400:]) == want, T, 0.2,
                        "sends reach all 8 queues of both sets")
        proc.wait_until(lambda: {(q.broker_set, q.queue_id) for o in owned for q in o} == want, T, 0.2,
                        "the consumers' rebalance covers every queue")
        assert owned[0] and owned[1] and not (owned[0] & owned[1])
        route = json.loads(admin(env, "topic", "route", TOPIC, "--json").stdout)
        assert {(q["broker_set"], q["read_queues"]) for q in route["queues"]} == {("broker-a", 4), ("broker-b", 4)}
    finally:
        stop.set()
        threads[0].join(60)
        try:
            # every acknowledged message is consumed (the consumers keep reading)
            proc.wait_until(lambda: set(acked) <= consumed, T, 0.5, "every acknowledged message consumed")
        finally:
            stop_consumers.set()
            for t in threads[1:]:
                t.join(30)
            for c in consumers:
                c.close()
    assert not errors, errors[:5]
