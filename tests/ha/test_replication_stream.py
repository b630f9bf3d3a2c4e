"""Master -> follower streaming over real loopback TCP between real MessageStores (no controller):
identical commitlogs and indexes, confirm offsets, acks, epoch entries, divergent-tail truncation
(durable across a reopen), and a peer speaking garbage being refused without harm."""

from __future__ import annotations

import asyncio
import time

import pytest

from orbitmq.broker.ha.ack_policy import AckPolicy
from orbitmq.broker.ha.epoch_file import EpochEntry, EpochFile
from orbitmq.broker.ha.follower import FollowerSettings, HAFollower
from orbitmq.broker.ha.master import HAMaster, MasterSettings
from orbitmq.broker.ha.replication_hooks import ReplicationError
from orbitmq.broker.ha.sync_state import SyncStateSet
from orbitmq.broker.store import Message, MessageStore, StoreConfig
from orbitmq.common.net import free_port


def open_store(path) -> MessageStore:
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=1 << 20, auto_confirm=False,
                                 expiry_interval_s=0))
    s.open()
    return s


def put(store: MessageStore, n: int, tag: str = "a") -> int:
    res = store.put_batch([Message(topic="T", body=f"{tag}-{i}".encode() * 20, queue_id=i % 2, tags=tag)
                           for i in range(n)])
    return res[-1].end_offset


class Node:
    def __init__(self, tmp, name: str, broker_id: int) -> None:
        self.dir = tmp / name
        self.store = open_store(self.dir / "store")
        self.epochs = EpochFile(self.dir / "epochs")
        self.id = broker_id

    def reopen(self) -> None:
        self.store.close()
        self.store = open_store(self.dir / "store")
        self.epochs = EpochFile(self.dir / "epochs")


async def start_master(node: Node, epoch: int, members: set[int], min_replicas: int = -1) -> HAMaster:
    node.epochs.append(epoch, node.store.max_physical_offset)
    sss = SyncStateSet(node.id, epoch, node.store.max_physical_offset, members, 1, 3.0, time.monotonic(),
                       node.store.confirm_offset)
    m = HAMaster(node.store, node.epochs, node.id, epoch, sss,
                 MasterSettings(frame_bytes=64 * 1024, heartbeat_s=0.2, ack_timeout_s=2.0,
                                policy=AckPolicy(min_replicas=min_replicas)),
                 f"127.0.0.1:{free_port()}", replica_count=lambda: 3)
    port = await m.start()
    m.listen = f"127.0.0.1:{port}"
    return m


def follow(node: Node, master: HAMaster, learner: bool = False) -> HAFollower:
    f = HAFollower(node.store, node.epochs, node.id, learner, master.listen,
                   FollowerSettings(heartbeat_s=0.2, reconnect_s=0.05))
    f.start()
    return f


async def until(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


def bodies(store: MessageStore) -> list[bytes]:
    out = []
    for q in (0, 1):
        r = store.get_messages("T", q, 0, 10_000, 1 << 30)
        out += [m.body for m in r.messages]
    return out


def test_stream_replicates_bytes_indexes_and_confirm(tmp_path):
    async def main() -> None:
        a, b, c = Node(tmp_path, "a", 1), Node(tmp_path, "b", 2), Node(tmp_path, "c", 3)
        m = await start_master(a, 1, {1, 2})
        fb, fc = follow(b, m), follow(c, m, learner=True)
        try:
            end = put(a.store, 500)
            t0 = time.monotonic()
            await m.wait_replicated(end)          # b (in the set) holds it
            assert b.store.max_physical_offset >= end
            latency = time.monotonic() - t0
            await until(lambda: c.store.max_physical_offset == end)
            await until(lambda: b.store.confirm_offset == end and c.store.confirm_offset == end)
            assert a.store.read_raw(0, 1 << 30) == b.store.read_raw(0, 1 << 30) == c.store.read_raw(0, 1 << 30)
            await until(lambda: len(bodies(b.store)) == 500)
            assert bodies(b.store) == bodies(a.store) and bodies(c.store) == bodies(a.store)
            assert b.epochs.entries == [EpochEntry(1, 0)] == c.epochs.entries
            assert 3 not in m.sss.ack_set()       # the learner never joins
            assert latency < 5
            # many small sends in a row: each is acknowledged once the follower holds it
            for _ in range(50):
                await m.wait_replicated(put(a.store, 3))
            # the follower's stream breaks: the set member is dropped and sends fail clearly
            await fb.stop()
            end = put(a.store, 1)
            with pytest.raises(ReplicationError) as ei:
                await m.wait_replicated(end)
            assert ei.value.code in ("REPLICATION_TIMEOUT", "IN_SYNC_REPLICAS_NOT_ENOUGH")
        finally:
            await fb.stop()
            await fc.stop()
            await m.stop()
        for n in (a, b, c):
            n.store.close()

    asyncio.run(main())


def test_divergent_tail_is_truncated_durably(tmp_path):
    async def main() -> None:
        a, b = Node(tmp_path, "a", 1), Node(tmp_path, "b", 2)
        m = await start_master(a, 1, {1, 2})
        f = follow(b, m)
        common = put(a.store, 100, "x")
        await m.wait_replicated(common)
        await f.stop()
        await m.stop()
        # a keeps writing in epoch 1 (never acknowledged), then b becomes master of epoch 2
        a_tail = put(a.store, 40, "lost")
        assert a_tail > common
        m2 = await start_master(b, 2, {2, 1})
        b_end = put(b.store, 30, "new")
        f2 = follow(a, m2)
        try:
            await until(lambda: a.store.max_physical_offset == b.store.max_physical_offset)
            assert f2.truncations == [(a_tail, common)]
            assert a.store.read_raw(0, 1 << 30) == b.store.read_raw(0, 1 << 30)
            assert a.epochs.entries == [EpochEntry(1, 0), EpochEntry(2, common)]
            await m2.wait_replicated(b_end)
        finally:
            await f2.stop()
            await m2.stop()
        # durable: after a reopen, the lost tail does not come back
        a.reopen()
        assert a.store.max_physical_offset == b.store.max_physical_offset
        assert a.epochs.entries == [EpochEntry(1, 0), EpochEntry(2, common)]
        assert not any(x.startswith(b"lost") for x in bodies(a.store) if a.store.confirm_offset > 0)
        a.store.set_confirm_offset(a.store.max_physical_offset)
        await until(lambda: len(bodies(a.store)) == 130)
        assert not any(x.startswith(b"lost") for x in bodies(a.store))
        for n in (a, b):
            n.store.close()

    asyncio.run(main())


def test_garbage_peer_is_refused_and_master_keeps_serving(tmp_path):
    async def main() -> None:
        a, b = Node(tmp_path, "a", 1), Node(tmp_path, "b", 2)
        m = await start_master(a, 1, {1})
        end = put(a.store, 10)
        host, port = m.listen.split(":")
        r, w = await asyncio.open_connection(host, int(port))
        w.write(b"GET / HTTP/1.1\r\n\r\n")
        await w.drain()
        data = await asyncio.wait_for(r.read(4096), 5)  # a REFUSE frame, then close
        assert b"bad magic" in data
        w.close()
        f = follow(b, m)
        try:
            await until(lambda: b.store.max_physical_offset == end)
        finally:
            await f.stop()
            await m.stop()
        assert a.store.read_raw(0, 1 << 30) == b.store.read_raw(0, 1 << 30)
        for n in (a, b):
            n.store.close()

    asyncio.run(main())


def test_the_message_store_is_a_replica_store(tmp_path):
    from orbitmq.broker.ha.replica_store import ReplicaStore
    s = open_store(tmp_path / "s")
    try:
        assert isinstance(s, ReplicaStore)
        assert (s.max_physical_offset, s.min_physical_offset, s.confirm_offset) == (0, 0, 0)
    finally:
        s.close()
