"""The broker-side agent against a real single-node controller (real gRPC on loopback, real
pysyncobj with its journal) in this process: identity files, registration, role-change delivery,
sync-state-set changes; and a controller embedded in `orbitmq namesrv --enable-controller`."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import pytest

from orbitmq.common import net, proc
from orbitmq.controller.agent import IDENTITY, TEMP, AgentSettings, BrokerAgent, IdentityError
from orbitmq.controller.client import ControllerClient
from orbitmq.controller.config import ControllerConfig
from orbitmq.controller.server import start_controller
from orbitmq.protos import namesrv_pb2, namesrv_pb2_grpc

C, S = "C", "s"


class Hooks:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.roles: list[tuple] = []
        self.acks = 0

    def set_broker_id(self, broker_id: int) -> None:
        self.ids.append(broker_id)

    def heartbeat_ok(self, sent_at: float) -> None:
        self.acks += 1

    def live_info(self) -> dict[str, int]:
        return {"epoch": 0, "max_offset": 0, "confirm_offset": 0}

    async def on_role_change(self, master_id, master_address, master_ha_address, master_epoch, sss, sss_epoch):
        self.roles.append((master_id, master_epoch, tuple(sorted(sss)), sss_epoch))


async def until(pred, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        v = pred()
        if v:
            return v
        await asyncio.sleep(0.05)
    raise TimeoutError(what)


@contextlib.asynccontextmanager
async def controller(tmp: Path):
    p1, p2 = net.free_ports(2)
    cfg = ControllerConfig(listen=f"127.0.0.1:{p1}", raft_addr=f"127.0.0.1:{p2}", data_dir=str(tmp / "ctl"),
                           heartbeat_timeout_s=1.0, broker_lease_s=0.8)
    h = await start_controller(cfg)
    client = ControllerClient([cfg.listen])
    try:
        await client.wait_leader(20)
        yield cfg, client
    finally:
        await client.close()
        await h.stop()


def agent(cfg: ControllerConfig, d: Path, hooks: Hooks, broker_id: int = 0, learner: bool = False) -> BrokerAgent:
    return BrokerAgent(AgentSettings(controllers=[cfg.listen], cluster=C, broker_set=S,
                                     address=f"127.0.0.1:{net.free_port()}", identity_dir=str(d),
                                     broker_id=broker_id, learner=learner, heartbeat_s=0.2, poll_s=0.5), hooks)


def test_identity_files_ids_and_restart(tmp_path):
    async def main():
        async with controller(tmp_path) as (cfg, client):
            h1, h2 = Hooks(), Hooks()
            a1, a2 = agent(cfg, tmp_path / "b1", h1), agent(cfg, tmp_path / "b2", h2)
            await a1.start(wait_registered_s=10)
            await a2.start(wait_registered_s=10)
            assert {a1.broker_id, a2.broker_id} == {1, 2}
            text = (tmp_path / "b1" / IDENTITY).read_text().strip()
            assert text == f"{C}#{S}#{a1.broker_id}#{a1.check_code}"
            assert not (tmp_path / "b1" / TEMP).exists()
            first_id = a1.broker_id
            await a1.stop()
            # restart from the same directory: the same id, accepted by its check code
            h1b = Hooks()
            a1b = agent(cfg, tmp_path / "b1", h1b)
            await a1b.start(wait_registered_s=10)
            assert a1b.broker_id == first_id and h1b.ids == [first_id]
            # a fresh broker that insists on a taken id is refused and never registers
            h3 = Hooks()
            a3 = agent(cfg, tmp_path / "b3", h3, broker_id=first_id)
            await a3.start(wait_registered_s=1.5)
            assert not a3.registered.is_set() and not (tmp_path / "b3" / IDENTITY).exists()
            v = await client.get_replica_info(C, S)
            assert sorted(r.broker_id for r in v.replicas) == [1, 2]
            # an interrupted application (temp file only) is resumed with its id and check code
            d4 = tmp_path / "b4"
            d4.mkdir()
            (d4 / TEMP).write_text(f"{C}#{S}#7#addr;123\n")
            a4 = agent(cfg, d4, Hooks())
            await a4.start(wait_registered_s=10)
            assert a4.broker_id == 7 and a4.check_code == "addr;123" and not (d4 / TEMP).exists()
            # a store that belongs to another set is refused
            d5 = tmp_path / "b5"
            d5.mkdir()
            (d5 / IDENTITY).write_text(f"{C}#other#1#x\n")
            a5 = agent(cfg, d5, Hooks())
            with pytest.raises(IdentityError, match=f"{d5 / IDENTITY}: this store belongs to {C}/other"):
                await a5.start(wait_registered_s=1.0)   # at once, naming the file
            assert not a5.registered.is_set()
            assert (d5 / IDENTITY).read_text() == f"{C}#other#1#x\n"   # never overwritten
            for a in (a2, a1b, a3, a4, a5):
                await a.stop()
    asyncio.run(main())


def test_role_changes_are_delivered_and_the_master_alters_its_set(tmp_path):
    async def main():
        async with controller(tmp_path) as (cfg, client):
            hs = [Hooks(), Hooks(), Hooks()]
            agents = [agent(cfg, tmp_path / f"b{i}", hs[i], learner=(i == 2)) for i in range(3)]
            for a in agents:
                await a.start(wait_registered_s=10)
            await until(lambda: all(h.roles and h.roles[-1][0] for h in hs), 10, "master known to all")
            master = hs[0].roles[-1][0]
            assert master != agents[2].broker_id   # never the learner
            await until(lambda: all(h.acks > 0 for h in hs), 5, "heartbeats answered (leases renewed)")
            m = next(a for a in agents if a.broker_id == master)
            other = next(a for a in agents[:2] if a is not m)
            v = await client.get_replica_info(C, S)
            ok, members, epoch = await m.alter_sync_state_set(v.master_epoch, [master, other.broker_id], v.sss_epoch)
            assert ok and members == sorted([master, other.broker_id]) and epoch == v.sss_epoch + 1
            await until(lambda: all(h.roles[-1][2] == tuple(members) for h in hs), 5, "new set pushed")
            # stale epoch: refused, and told the current set
            ok, members2, epoch2 = await m.alter_sync_state_set(v.master_epoch, [master], v.sss_epoch)
            assert not ok and members2 == members and epoch2 == epoch
            # a learner cannot join
            ok, *_ = await m.alter_sync_state_set(v.master_epoch, members + [agents[2].broker_id], epoch)
            assert not ok
            # the master stops: the other member takes over and the learner is told
            await m.stop()
            await until(lambda: hs[2].roles[-1][0] == other.broker_id, 10, "failover")
            assert hs[2].roles[-1][1] == v.master_epoch + 1
            for a in agents:
                if a is not m:
                    await a.stop()
    asyncio.run(main())


@pytest.mark.process
def test_controller_embedded_in_namesrv(tmp_path):
    p1, p2 = net.free_ports(2)
    addr = f"127.0.0.1:{p1}"
    child = proc.start("namesrv", proc.orbitmq_argv(
        "namesrv", "--listen", addr, "--enable-controller", "--controller-raft-addr", f"127.0.0.1:{p2}",
        "--controller-data-dir", str(tmp_path / "ctl"), "--controller-set", "heartbeat_timeout_s=1.0",
        "--controller-set", "broker_lease_s=0.5"), log_path=tmp_path / "namesrv.log")
    try:
        net.wait_for_port(addr, 30)

        async def main():
            c = ControllerClient([addr])
            try:
                md = await c.wait_leader(20)
                assert md.leader_address == addr
                assert (await c.apply_broker_id(C, S, 1, "k")).ok
                assert (await c.get_replica_info(C, S)).exists
            finally:
                await c.close()
            async with grpc.aio.insecure_channel(addr) as ch:   # the name server still answers
                info = await namesrv_pb2_grpc.NameServerStub(ch).GetClusterInfo(namesrv_pb2.GetClusterInfoRequest(),
                                                                                timeout=5)
                assert info is not None
        asyncio.run(main())
    except BaseException:
        print(child.log_tail(40))
        raise
    finally:
        child.stop()


def test_snapshot_and_journal_recover_the_state_after_restart(tmp_path):
    """Log compaction writes a full dump; a restarted node rebuilds from dump + journal."""
    p1, p2 = net.free_ports(2)
    cfg = ControllerConfig(listen=f"127.0.0.1:{p1}", raft_addr=f"127.0.0.1:{p2}", data_dir=str(tmp_path / "ctl"),
                           heartbeat_timeout_s=1.0, broker_lease_s=0.8, log_compaction_entries=10)

    async def phase(n_sets: int) -> list[tuple[str, int, int]]:
        h = await start_controller(cfg)
        c = ControllerClient([cfg.listen])
        try:
            await c.wait_leader(20)
            for i in range(n_sets):
                assert (await c.apply_broker_id(C, f"set{i}", i + 1, f"k{i}")).ok
            views = await c.get_sync_state_data()
            return [(v.broker_set, v.next_broker_id, len(v.replicas)) for v in views]
        finally:
            await c.close()
            await h.stop()

    before = asyncio.run(phase(30))
    assert len(before) == 30
    assert (tmp_path / "ctl" / "raft.dump").exists()
    after = asyncio.run(phase(0))
    assert after == before
