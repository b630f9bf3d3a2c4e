"""Segment expiry in an HA set on real processes (issue 8, critical): tiny segments, seconds of
retention, sync sends and consumer-offset commits (META records in every segment). Expiry runs
many times on the master, both followers and the learner; replication and acknowledgements keep
going, every replica expires too (from the master's snapshots), and every replica's log stays
byte for byte a prefix of the master's (segment files compared over the range all hold)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from orbitmq.bench.replication import TOPIC, SetClient, ha_cluster
from orbitmq.common import proc
from orbitmq.protos import broker_pb2, common_pb2

pytestmark = pytest.mark.process

SEG = 64 * 1024


def store_toml(retention_s: float) -> str:
    return f"[store]\nsegment_size = {SEG}\nretention_hours = {retention_s / 3600}\nexpiry_interval_s = 0.3\n"


def _st(client: SetClient, addr: str) -> broker_pb2.BrokerStatus:
    return client.status(addr, timeout=3.0) or broker_pb2.BrokerStatus()


def _read_range(store: Path, start: int, end: int) -> bytes | None:
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


def test_expiry_on_every_replica_keeps_replication_going_and_logs_identical(tmp_path):
    # the master keeps segments for 5 s, the others for 1 s: their expiry always comes first (the
    # incident's order), so a replica that wrote its own snapshot would show at once
    slow, fast = tmp_path / "slow.toml", tmp_path / "fast.toml"
    slow.write_text(store_toml(5.0))
    fast.write_text(store_toml(1.0))
    c = ha_cluster(tmp_path / "c", broker_settings={"ha_ack_timeout_s": "3.0"})
    try:
        c.start_controllers()
        c.start_namesrvs()
        brokers = [c.add_broker("exp", i) for i in (1, 2, 3)] + [c.add_broker("exp", 4, learner=True)]
        for b in brokers:
            b.child = c._start(b.name, [*c.broker_args(b), "--config", str(slow)])
        client = SetClient(brokers)
        master = client.wait_master(60)
        client.create_topic()
        m = next(b for b in brokers if b.addr == master)
        others = [b for b in brokers if b is not m]
        for b in others:
            b.child.stop()
            b.child = c._start(b.name, [*c.broker_args(b), "--config", str(fast)])
        proc.wait_until(lambda: dict(_st(client, master).stats).get("ha_sss") == "1,2,3", 60, 0.2,
                        "sync-state-set of all three")
        assert client.find_master() == master

        acked = [0]
        errors: dict[str, int] = {}
        stop = threading.Event()

        def load() -> None:
            seq = 0
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                seq += 1
                try:
                    client.stubs[master].SendMessage(broker_pb2.SendRequest(topic=TOPIC, queue_id=seq % 4, messages=[
                        common_pb2.Message(topic=TOPIC, body=f"e-{seq:07d}".encode().ljust(1024, b"."))
                        for _ in range(8)]), timeout=5)
                    acked[0] += 1
                    if seq % 5 == 0:  # a META record (consumer offset) in every segment
                        client.stubs[master].CommitOffset(broker_pb2.CommitOffsetRequest(
                            group="g1", topic=TOPIC, queue_id=seq % 4, offset=seq), timeout=5)
                except grpc.RpcError as e:
                    errors[e.code().name] = errors.get(e.code().name, 0) + 1
                    time.sleep(0.05)

        t = threading.Thread(target=load, daemon=True)
        t.start()
        try:
            # several expiries on every replica, followers' included (they need the master's snapshots)
            def expired_everywhere() -> bool:
                return all(_st(client, b.addr).min_physical_offset >= 4 * SEG for b in brokers)
            proc.wait_until(expired_everywhere, 90, 0.3, "several segments expired on every replica")
            for _ in range(3):  # and acknowledgements keep coming after that
                n = acked[0]
                proc.wait_until(lambda n=n: acked[0] >= n + 20, 30, 0.1, "sends still acknowledged")
                # every replica's log is a byte-for-byte prefix of the master's, over what all hold
                sts = {b.name: _st(client, b.addr) for b in brokers}
                lo = max(s.min_physical_offset for s in sts.values())
                hi = min(s.max_physical_offset for s in sts.values())
                assert hi > lo
                ref = _read_range(m.store, lo, hi)
                for b in others:
                    got = _read_range(b.store, lo, hi)
                    if ref is not None and got is not None:  # None: expired under us, next round
                        assert got == ref, f"{b.name}'s log differs from the master's in [{lo}, {hi})"
        finally:
            stop.set()
            t.join(timeout=15)
        # admin writes aimed at a follower or the learner are refused and write nothing there
        for b in others:
            with pytest.raises(grpc.RpcError) as ei:
                client.stubs[b.addr].CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
                    topic="OnFollower", read_queues=1, write_queues=1, perm=6)), timeout=10)
            assert dict(ei.value.trailing_metadata() or ()).get("orbitmq-error") == "NOT_MASTER"
            with pytest.raises(grpc.RpcError):
                client.stubs[b.addr].CommitOffset(broker_pb2.CommitOffsetRequest(
                    group="g1", topic=TOPIC, queue_id=0, offset=1), timeout=10)
        mx = _st(client, master).max_physical_offset
        proc.wait_until(lambda: all(_st(client, b.addr).max_physical_offset >= mx for b in others), 30, 0.2,
                        "every replica caught up")
        # the 1 s replicas keep expiring after the load stops: compare what every replica still holds,
        # reading again when a segment went between the status call and the read (the active
        # segment never expires, so this ends)
        for _ in range(50):
            sts = {b.name: _st(client, b.addr) for b in brokers}
            lo = max(s.min_physical_offset for s in sts.values())
            hi = min(s.max_physical_offset for s in sts.values())
            logs = {b.name: _read_range(b.store, lo, hi) for b in brokers}
            if None not in logs.values():
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"segments kept vanishing under the read: {lo}, {hi}, {sorted(logs)}")
        assert hi >= lo   # equal only if the last write ended a segment exactly
        for b in others:
            assert logs[b.name] == logs[m.name], f"{b.name}'s log differs from the master's in [{lo}, {hi})"
            assert sts[b.name].max_physical_offset == sts[m.name].max_physical_offset  # nothing of its own
        assert _st(client, master).role == "MASTER"
        print(f"acked sends {acked[0]}, errors {errors}, min offsets "
              f"{ {n: s.min_physical_offset for n, s in sts.items()} }")
        client.close()
    except BaseException:
        print(c.logs(40))
        raise
    finally:
        c.stop()
