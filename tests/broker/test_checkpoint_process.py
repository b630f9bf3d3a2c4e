"""A real `orbitmq broker` stopped with SIGTERM restarts from its clean-shutdown checkpoint (its
status and log say so) with every message consumable; after SIGKILL it scans instead."""

from __future__ import annotations

import grpc
import pytest

from orbitmq.common import net
from orbitmq.common.proc import wait_until
from orbitmq.protos import broker_pb2, broker_pb2_grpc, common_pb2

pytestmark = pytest.mark.process

TOPIC = "Ckpt"


def start(procs, tmp_path, name: str, addr: str):
    cfg = tmp_path / "broker.toml"
    cfg.write_text("[store]\nsegment_size = 1048576\n")
    child = procs.start(name, ["broker", "--listen", addr, "--store-dir", str(tmp_path / "store"), "--cluster", "c1",
                               "--broker-set", "bs1", "--broker-id", "0", "--config", str(cfg)])
    net.wait_for_port(addr, 60)
    return child


def status(stub) -> dict[str, str]:
    return dict(stub.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=30).stats)


def consume(stub, queues: int) -> dict[int, list[bytes]]:
    out = {}
    for q in range(queues):
        got, off = [], 0
        while True:
            r = stub.PullMessage(broker_pb2.PullRequest(group="g", topic=TOPIC, queue_id=q, queue_offset=off,
                                                        max_messages=64, commit_offset=-1), timeout=30)
            if not r.messages:
                break
            got += [m.body for m in r.messages]
            off = r.next_offset
        out[q] = got
    return out


def test_sigterm_restart_uses_the_checkpoint_and_keeps_every_message(procs, tmp_path) -> None:
    addr = f"127.0.0.1:{net.free_port()}"
    first = start(procs, tmp_path, "broker-1", addr)
    stub = broker_pb2_grpc.BrokerStub(grpc.insecure_channel(addr))
    stub.CreateTopic(broker_pb2.CreateTopicRequest(config=common_pb2.TopicConfig(
        topic=TOPIC, read_queues=2, write_queues=2, perm=6)), timeout=30)
    want: dict[int, list[bytes]] = {0: [], 1: []}
    for i in range(0, 600, 50):   # ~600 KiB in 1 MiB segments, plus the topic's META record
        q = (i // 50) % 2
        bodies = [f"msg-{j:05d}-".encode() + b"p" * 1000 for j in range(i, i + 50)]
        stub.SendMessage(broker_pb2.SendRequest(topic=TOPIC, queue_id=q, messages=[
            common_pb2.Message(topic=TOPIC, body=b, keys=[f"k{i}"]) for b in bodies]), timeout=30)
        want[q] += bodies
    assert status(stub)["recovery"] == "new"
    assert first.stop(timeout=60) == 0
    assert "clean-shutdown checkpoint written" in first.log_path.read_text()

    second = start(procs, tmp_path, "broker-2", addr)
    st = wait_until(lambda: status(stub), 60, what="status after the SIGTERM restart")
    assert st["recovery"] == "checkpoint", (st, procs.logs())
    assert "recovery=checkpoint" in second.log_path.read_text()
    assert consume(stub, 2) == want
    key = stub.QueryMessageByKey(broker_pb2.QueryByKeyRequest(topic=TOPIC, key="k550", max_messages=64), timeout=30)
    assert [m.body for m in key.messages] == want[1][-50:]

    second.kill9()
    third = start(procs, tmp_path, "broker-3", addr)
    st = wait_until(lambda: status(stub), 60, what="status after the SIGKILL restart")
    assert st["recovery"] == "scan" and st["recovery_reason"] == "missing", st
    assert "no clean-shutdown checkpoint" in third.log_path.read_text()
    assert consume(stub, 2) == want
