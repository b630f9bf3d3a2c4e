"""Replicas joining a running broker set whose master expired its oldest segments (issue 13), on
real processes: tiny segments, seconds of retention, sync sends all along. A new, empty replica
and a new learner start their logs at the master's first retained offset, catch up byte for
byte, the replica joins the sync-state-set and is elected master later (`orbitmq admin
controller elect`); a replica whose disk was wiped rejoins the same way under its own id once
the controllers forgot the old one (`orbitmq admin controller remove-replica`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from orbitmq.bench.replication import TOPIC, SetClient, ha_cluster
from orbitmq.common import proc
from orbitmq.common.local_cluster import BrokerProc, LocalCluster
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

pytestmark = pytest.mark.process

SEG = 64 * 1024
SET = "join"


def _st(c: LocalCluster, name: str) -> broker_pb2.BrokerStatus:
    return c.status(name, timeout=3.0) or broker_pb2.BrokerStatus()


def _sss(c: LocalCluster, name: str) -> str:
    return dict(_st(c, name).stats).get("ha_sss", "")


def read_range(store: Path, start: int, end: int) -> bytes | None:
    """Bytes [start, end) of a commitlog from its segment files (None if a segment is gone)."""
    out = bytearray()
    pos = start
    while pos < end:
        base = pos - pos % SEG
        try:
            with open(store / "commitlog" / f"{base:020d}", "rb") as fh:
                fh.seek(pos - base)
                chunk = fh.read(min(end, base + SEG) - pos)
        except FileNotFoundError:
            return None
        out += chunk
        pos += len(chunk)
    return bytes(out)


def assert_identical(c: LocalCluster, master: BrokerProc, others: list[BrokerProc]) -> None:
    """Every replica's log equals the master's over the range all of them hold (retried while
    expiry deletes a segment under us)."""
    def same() -> bool:
        sts = {b.name: _st(c, b.name) for b in [master, *others]}
        lo = max(s.min_physical_offset for s in sts.values())
        hi = min(s.max_physical_offset for s in sts.values())
        assert hi > lo, f"no range in common: {[(n, s.min_physical_offset, s.max_physical_offset) for n, s in sts.items()]}"
        ref = read_range(master.store, lo, hi)
        if ref is None:
            return False
        for b in others:
            got = read_range(b.store, lo, hi)
            if got is None:
                return False
            assert got == ref, f"{b.name}'s log differs from {master.name}'s in [{lo}, {hi})"
        return True
    proc.wait_until(same, 30, 0.3, "logs compared over a common range")


def admin(c: LocalCluster, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ORBITMQ_CONTROLLERS": ",".join(c.controller_addrs),
           "ORBITMQ_CLUSTER_SECRET_FILE": c.cluster_secret()}
    return subprocess.run(proc.orbitmq_argv("admin", "controller", *args), env=env, capture_output=True, text=True,
                          timeout=60)


class Load:
    """Sync sends (8 x 1 KiB each) to whichever replica is master, every few ms, with a consumer
    offset commit now and then (META records in every segment); bounded in time."""

    def __init__(self, client: SetClient, limit_s: float = 300.0) -> None:
        self.client = client
        self.acked = 0
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()
        self.limit_s = limit_s
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seq = 0
        deadline = time.monotonic() + self.limit_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            seq += 1
            m = self.client.master or self.client.find_master()
            if m is None:
                time.sleep(0.1)
                continue
            try:
                self.client.stubs[m].SendMessage(broker_pb2.SendRequest(topic=TOPIC, queue_id=seq % 4, messages=[
                    common_pb2.Message(topic=TOPIC, body=f"j-{seq:07d}".encode().ljust(1024, b"."))
                    for _ in range(8)]), timeout=5)
                self.acked += 1
                if seq % 5 == 0:
                    self.client.stubs[m].CommitOffset(broker_pb2.CommitOffsetRequest(
                        group="g1", topic=TOPIC, queue_id=seq % 4, offset=seq), timeout=5)
            except grpc.RpcError as e:
                self.errors[e.code().name] = self.errors.get(e.code().name, 0) + 1
                self.client.master = None
                time.sleep(0.05)
            time.sleep(0.005)

    def wait_more(self, n: int, timeout: float = 60.0) -> None:
        start = self.acked
        proc.wait_until(lambda: self.acked >= start + n, timeout, 0.1, f"{n} more acknowledged sends")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


def test_empty_replica_and_learner_join_after_expiry_catch_up_and_are_elected(tmp_path):
    conf = tmp_path / "store.toml"
    conf.write_text(f"[store]\nsegment_size = {SEG}\nretention_hours = {2.0 / 3600}\nexpiry_interval_s = 0.3\n")
    c = ha_cluster(tmp_path / "c", broker_settings={"ha_ack_timeout_s": "3.0"})
    load: Load | None = None
    try:
        c.start_controllers()
        c.start_namesrvs()
        first = [c.add_broker(SET, i) for i in (1, 2, 3)]
        for b in first:
            b.child = c._start(b.name, [*c.broker_args(b), "--config", str(conf)])
        client = SetClient(first)
        master_addr = client.wait_master(90)
        client.create_topic()
        m = next(b for b in first if b.addr == master_addr)
        proc.wait_until(lambda: _sss(c, m.name) == "1,2,3", 90, 0.2, "sync-state-set of all three")
        load = Load(client)
        # the master expires its oldest segments: its log no longer starts at 0
        proc.wait_until(lambda: _st(c, m.name).min_physical_offset >= 3 * SEG, 120, 0.3,
                        "the master expired three segments")

        # a new, empty replica (id 4) and a new learner (id 5) join under load
        new = c.add_broker(SET, 4)
        learner = c.add_broker(SET, 5, learner=True)
        for b in (new, learner):
            b.child = c._start(b.name, [*c.broker_args(b), "--config", str(conf)])
        started_at = _st(c, m.name).min_physical_offset
        proc.wait_until(lambda: _sss(c, m.name) == "1,2,3,4", 120, 0.3, "the new replica in the sync-state-set")
        for b in (new, learner):
            proc.wait_until(lambda b=b: _st(c, b.name).max_physical_offset > 0, 60, 0.2, f"{b.name} replicating")
            st = _st(c, b.name)
            # it never held offset 0: its log began at a first retained offset of the master's
            assert st.min_physical_offset >= started_at - 2 * SEG > 0, (b.name, st.min_physical_offset, started_at)
            assert st.role == ("LEARNER" if b.learner else "FOLLOWER")
        load.wait_more(30)
        assert_identical(c, m, [b for b in first if b is not m] + [new, learner])
        out = admin(c, "replicas", SET, "--json")
        assert out.returncode == 0, out.stderr
        reg = {int(r["broker_id"]): r for r in json.loads(out.stdout)["replicas"]}
        assert set(reg) == {1, 2, 3, 4, 5} and reg[5]["learner"] and not reg[4]["learner"]   # the registry knows both

        # the new replica can be elected: a manual switch to it, sends keep being acknowledged
        r = admin(c, "elect", SET, "--broker-id", "4")
        assert r.returncode == 0, r.stdout + r.stderr
        proc.wait_until(lambda: _st(c, new.name).role == "MASTER", 60, 0.2, "the new replica is master")
        client.brokers.append(new)
        client.channels[new.addr] = grpc.insecure_channel(new.addr)
        client.stubs[new.addr] = broker_pb2_grpc.BrokerStub(client.channels[new.addr])
        client.master = None
        load.wait_more(30)
        assert client.find_master() == new.addr
        assert_identical(c, new, [*first, learner])

        # a replica whose disk is wiped: stopped, forgotten by the controllers, started empty
        wiped = next(b for b in first if b is not m)
        wiped.child.stop()
        proc.wait_until(lambda: str(wiped.broker_id) not in _sss(c, new.name).split(","), 60, 0.3,
                        "the stopped replica out of the sync-state-set")
        def removed() -> bool:
            r = admin(c, "remove-replica", SET, "--broker-id", str(wiped.broker_id))
            assert r.returncode == 0 or "BROKER_ALIVE" in r.stderr, r.stdout + r.stderr
            return r.returncode == 0   # refused until the controllers see it dead
        proc.wait_until(removed, 60, 0.5, "the wiped replica's old id removed")
        shutil.rmtree(wiped.store)
        wiped.child = c._start(wiped.name, [*c.broker_args(wiped), "--config", str(conf)])
        proc.wait_until(lambda: _sss(c, new.name) == "1,2,3,4", 120, 0.3,
                        "the wiped replica back in the sync-state-set")
        assert _st(c, wiped.name).min_physical_offset > 0
        load.wait_more(30)
        assert_identical(c, new, [*first, learner])
        load.close()
        print(f"acked sends {load.acked}, errors {load.errors}")
        assert load.acked > 0
        client.close()
    except BaseException:
        print(c.logs(40))
        raise
    finally:
        if load is not None:
            load.close()
        c.stop()
