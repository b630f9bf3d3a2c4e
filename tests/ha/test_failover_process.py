"""HA on real processes: 3 controllers, a name server, a set of 3 replicas plus 1 learner.

Shown: a follower paused with SIGSTOP leaves the sync-state-set and rejoins after SIGCONT while
sends keep succeeding; kill -9 of the master gives a new master from the set within seconds, the
producer resumes, the restarted old master rejoins as a follower and cuts its divergent tail,
every acknowledged message is found afterwards, and the learner never becomes master.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from orbitmq.bench.replication import TOPIC, SetClient, error_code, ha_cluster
from orbitmq.common import proc
from orbitmq.protos import broker_pb2, common_pb2

pytestmark = pytest.mark.process


def _stats(c: SetClient, addr: str) -> dict[str, str]:
    st = c.status(addr)
    return dict(st.stats) if st is not None else {}


def _sss(c: SetClient, addr: str) -> set[int]:
    raw = _stats(c, addr).get("ha_sss", "")
    return {int(x) for x in raw.split(",") if x}


class Producer:
    """Sends numbered messages one at a time, remembering which were acknowledged."""

    def __init__(self, client: SetClient) -> None:
        self.client = client
        self.acked: list[bytes] = []
        self.errors: dict[str, int] = {}
        self.seq = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 240  # bounded
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.seq += 1
            body = f"m-{self.seq:07d}".encode()
            try:
                self.client.send([body], timeout=4)
                self.acked.append(body)
            except (grpc.RpcError, RuntimeError) as e:
                code = error_code(e) if isinstance(e, grpc.RpcError) else "NO_MASTER"
                self.errors[code] = self.errors.get(code, 0) + 1
                time.sleep(0.05)
            time.sleep(0.01)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)

    def wait_more(self, n: int, timeout: float) -> None:
        start = len(self.acked)
        proc.wait_until(lambda: len(self.acked) >= start + n, timeout, 0.05, f"{n} more acknowledged sends")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("ha")
    c = ha_cluster(root, broker_settings={"ha_max_lag_s": "2.0", "ha_ack_timeout_s": "2.0"})
    try:
        c.start_controllers()
        c.start_namesrvs()
        reps = [c.add_broker("rep", i) for i in (1, 2, 3)]
        learner = c.add_broker("rep", 4, learner=True)
        for b in [*reps, learner]:
            c.start_broker(b.name)
        client = SetClient([*reps, learner])
        client.wait_master(60)
        client.create_topic()
        m = client.wait_master(10)
        proc.wait_until(lambda: _sss(client, m) == {1, 2, 3}, 60, 0.2, "sync-state-set of all three")
        yield c, client, reps, learner
        client.close()
    except BaseException:
        print(c.logs(60))
        raise
    finally:
        c.stop()


def test_learner_replicates_but_is_never_in_the_set(cluster):
    c, client, reps, learner = cluster
    client.send([b"learner-check"])
    m = client.find_master()
    proc.wait_until(lambda: (client.status(learner.addr) or broker_pb2.BrokerStatus()).max_physical_offset
                    >= client.status(m).max_physical_offset, 20, 0.1, "learner caught up")
    assert client.status(learner.addr).role == "LEARNER"
    assert learner.broker_id not in _sss(client, m)


def test_paused_follower_leaves_the_set_and_rejoins(cluster):
    c, client, reps, learner = cluster
    m = client.find_master()
    victim = next(b for b in reps if b.addr != m)
    p = Producer(client)
    p.start()
    try:
        p.wait_more(20, 20)
        victim.child.pause()
        try:
            proc.wait_until(lambda: victim.broker_id not in _sss(client, m), 20, 0.1, "paused follower removed")
            p.wait_more(20, 20)  # sends succeed with the two remaining members
        finally:
            victim.child.resume()
        proc.wait_until(lambda: _sss(client, m) == {1, 2, 3}, 30, 0.1, "follower back in the set")
        p.wait_more(20, 20)
    finally:
        p.stop()
    assert client.find_master() == m


def test_master_cut_off_from_the_controllers_fences_itself(cluster):
    """With every controller frozen, the master's lease runs out: sends get FENCED, never a
    success; when the controllers come back, acknowledged sends resume."""
    c, client, reps, learner = cluster
    m = client.find_master()
    client.send([b"before-fence"])
    controllers = [ch for ch in c.children if ch.name.startswith("controller")]
    for ch in controllers:
        ch.pause()
    try:
        def fenced() -> bool:
            try:
                client.stubs[m].SendMessage(broker_pb2.SendRequest(topic=TOPIC, queue_id=0, messages=[
                    common_pb2.Message(topic=TOPIC, body=b"during-fence", tags="t")]), timeout=4)
                return False
            except grpc.RpcError as e:
                return error_code(e) == "FENCED"
        proc.wait_until(fenced, 10, 0.2, "the isolated master refuses sends with FENCED")
        proc.wait_until(lambda: _stats(client, m).get("ha_lease_ok") == "0", 5, 0.1, "lease reported expired")
    finally:
        for ch in controllers:
            ch.resume()
    proc.wait_until(lambda: _stats(client, m).get("ha_lease_ok") == "1", 30, 0.2, "lease renewed")
    proc.wait_until(lambda: _try(client), 30, 0.2, "sends succeed again")


def _try(client: SetClient) -> bool:
    try:
        client.send([b"after-fence"], timeout=3)
        return True
    except (grpc.RpcError, RuntimeError):
        return False


def test_kill_master_failover_truncates_divergent_tail_and_loses_nothing(cluster):
    c, client, reps, learner = cluster
    old_addr = client.find_master()
    old = next(b for b in reps if b.addr == old_addr)
    followers = [b for b in reps if b is not old]
    p = Producer(client)
    p.start()
    try:
        p.wait_more(30, 20)
        # give the master a tail nobody else has: pause the followers, make it append more than
        # their socket buffers can hold (these sends cannot be acknowledged), then kill it
        for f in followers:
            f.child.pause()
        # what the followers hold now (they are stopped): the master's own end at this moment bounds it
        held = (client.status(old_addr) or broker_pb2.BrokerStatus()).max_physical_offset
        big = [b"t" * 4096] * 256
        stuck = [threading.Thread(target=_send_quietly, args=(client, old_addr, big), daemon=True)
                 for _ in range(6)]
        for t in stuck:
            t.start()
        # the event: every stuck send is in the master's log (6 MiB of bodies that no follower has)
        tail = len(stuck) * sum(len(b) for b in big)
        proc.wait_until(lambda: (client.status(old_addr) or broker_pb2.BrokerStatus()).max_physical_offset
                        >= held + tail, 30, 0.05, "the master appended a tail the paused followers do not hold")
        t_kill = time.monotonic()
        c.kill9(old.name)
        for f in followers:
            f.child.resume()
        new = client.wait_master(30)
        failover = time.monotonic() - t_kill
        assert new in {f.addr for f in followers}
        assert new != learner.addr
        p.wait_more(20, 30)  # the producer resumes on the new master
        c.start_broker(old.name)
        proc.wait_until(lambda: (client.status(old.addr) or broker_pb2.BrokerStatus()).role == "FOLLOWER",
                        60, 0.2, "old master rejoined as follower")
        proc.wait_until(lambda: int(_stats(client, old.addr).get("ha_truncations", "0")) >= 1, 30, 0.2,
                        "old master cut its divergent tail")
        assert int(_stats(client, old.addr)["ha_truncated_bytes"]) > 0
        proc.wait_until(lambda: _sss(client, new) == {1, 2, 3}, 60, 0.2, "old master back in the set")
        p.wait_more(20, 30)
    finally:
        p.stop()
    assert client.status(learner.addr).role == "LEARNER"
    final = client.wait_master(10)
    found = set(client.read_all(final))
    lost = [b for b in p.acked if b not in found]
    assert not lost, f"{len(lost)} acknowledged messages lost (failover took {failover:.1f}s)"
    # the old master, now a follower, serves the same confirmed messages once caught up
    proc.wait_until(lambda: client.status(old.addr).max_physical_offset >= client.status(final).max_physical_offset,
                    30, 0.2, "old master caught up")


def _send_quietly(client: SetClient, addr: str, bodies: list[bytes]) -> None:
    try:
        client.stubs[addr].SendMessage(broker_pb2.SendRequest(topic=TOPIC, queue_id=0, messages=[
            common_pb2.Message(topic=TOPIC, body=b, tags="t") for b in bodies]), timeout=5)
    except grpc.RpcError:
        pass


def test_client_library_producer_resumes_after_master_kill(cluster):
    """`orbitmq.client.Producer` (routes from the name server) with sync sends: kill -9 of the
    master, the producer resumes on the new master, nothing it had acknowledged is lost."""
    from orbitmq.client import errors
    from orbitmq.client.message import Message
    from orbitmq.client.producer import Producer

    c, client, reps, learner = cluster
    acked: list[bytes] = []
    stop = threading.Event()

    def run(producer: Producer) -> None:
        seq = 0
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            seq += 1
            body = f"client-{seq:06d}".encode()
            try:
                producer.send(Message(TOPIC, body))
                acked.append(body)
            except errors.OrbitError:
                time.sleep(0.05)

    old_addr = client.find_master()
    old = next(b for b in reps if b.addr == old_addr)
    with Producer(c.namesrv_addrs, send_timeout_s=3.0, retries=2, route_refresh_s=1.0) as producer:
        t = threading.Thread(target=run, args=(producer,), daemon=True)
        t.start()
        try:
            proc.wait_until(lambda: len(acked) >= 20, 30, 0.05, "client producer sends")
            c.kill9(old.name)
            t_kill = time.monotonic()
            n = len(acked)
            proc.wait_until(lambda: len(acked) >= n + 20, 45, 0.05, "client producer resumed after the kill")
            print(f"client producer resumed {time.monotonic() - t_kill:.2f}s after the kill")
        finally:
            stop.set()
            t.join(timeout=15)
    c.start_broker(old.name)
    final = client.wait_master(10)
    found = set(client.read_all(final))
    assert len(acked) >= 40 and not [b for b in acked if b not in found]
    proc.wait_until(lambda: (client.status(old.addr) or broker_pb2.BrokerStatus()).role == "FOLLOWER", 60, 0.2,
                    "old master rejoined")
