"""The HA implementation of the broker's replication hooks: roles, epochs, lease and fencing.

Owns: what this replica is (a `roles.Role`; which change a controller view asks for and the
transition table are pure, in roles.py), carrying out the transitions the controller orders (become master: stop following, seal the log, open a new
epoch at its end, write a metadata snapshot, serve followers, register as master; follow: stop
serving, replicate from the master after the epoch handshake), the send-path checks
(NOT_MASTER, FENCED, replication waits) and the lease: a master acknowledges nothing unless its
last answered controller heartbeat was sent less than `lease_s` ago (self-fencing). Replication
itself is in ha_master.py / ha_follower.py, the rules in sync_state.py / ack_policy.py; the
controller conversation is the controller agent's (orbitmq.controller.agent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orbitmq.broker.ha.ack_policy import AckPolicy, Lease, Verdict
from orbitmq.broker.ha.epoch_file import EpochFile
from orbitmq.broker.ha.follower import FollowerSettings, HAFollower
from orbitmq.broker.ha.handoff import Handoff, HandoffRefused, Step, choose_successor
from orbitmq.broker.ha.master import HAMaster, MasterSettings, store_confirm, store_max
from orbitmq.broker.ha.replication_hooks import ReplicationError, ReplicationHooks
from orbitmq.broker.ha.roles import Change, Role, decide, master_epoch_start, next_role
from orbitmq.broker.ha.stream_tls import ha_client_ssl, ha_server_ssl
from orbitmq.broker.ha.sync_state import SyncStateSet
from orbitmq.common.logs import kv
from orbitmq.common.node_auth import load_secret

if TYPE_CHECKING:
    from orbitmq.broker.config import BrokerConfig
    from orbitmq.broker.server import BrokerServer

log = logging.getLogger("orbitmq.broker.role")


class RoleManager(ReplicationHooks):
    """Replication hooks for a broker in controller mode."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._role = Role.NONE
        self._epoch = 0
        self.broker_id = config.broker_id
        self.master_id: int | None = None
        self.master_addr = ""
        self.master_ha = ""
        self.lease = Lease(config.ha_lease_s)
        self.policy = AckPolicy(config.ha_ack_mode, config.ha_min_replicas)
        self.epochs: EpochFile | None = None
        self.master: HAMaster | None = None
        self.follower: HAFollower | None = None
        self.agent: Any = None
        self._lock: asyncio.Lock | None = None
        self._ha_port = 0
        self.server: BrokerServer | None = None
        self._status_task: asyncio.Task | None = None
        self._snapshot_task: asyncio.Task | None = None
        self._count_cache: tuple[Any, int] | None = None
        self.truncations: list[tuple[int, int]] = []  # (from, to) of every divergent tail cut
        self._handoff: Handoff | None = None
        self._released: asyncio.Event | None = None   # held sends go on once set
        self.handoffs: list[dict[str, Any]] = []        # outcome of every handoff (status, tests)

    # ---- lifecycle --------------------------------------------------------------------------------

    async def start(self, server: BrokerServer) -> None:
        self.server = server
        self._lock = asyncio.Lock()
        store = server.store
        self.epochs = EpochFile(Path(self.config.store_dir) / "epochs")
        if hasattr(store, "set_auto_confirm"):
            store.set_auto_confirm(False)
        from orbitmq.controller.agent import BrokerAgent  # the controller engineer's module

        self.agent = BrokerAgent.for_broker(self.config, self)
        await self.agent.start()
        self._status_task = asyncio.create_task(self._publish_status())

    async def stop(self) -> None:
        if self._status_task is not None:
            self._status_task.cancel()
        if self.agent is not None:
            with contextlib.suppress(Exception):
                await self.agent.stop()
        await self._stop_master()
        await self._stop_follower()

    # ---- called by the controller agent -----------------------------------------------------------

    def set_broker_id(self, broker_id: int) -> None:
        """The controller assigned (or confirmed) this replica's id."""
        self.broker_id = broker_id
        if self.server is not None:
            self.server.config.broker_id = broker_id
            if self.server.registrar is not None:
                self.server.registrar.identity.broker_id = broker_id

    def heartbeat_ok(self, sent_at: float) -> None:
        """A heartbeat sent at monotonic time `sent_at` was answered by the controller leader."""
        self.lease.renew(sent_at)

    def live_info(self) -> dict[str, int]:
        """What heartbeats carry: epoch, max offset and confirm offset."""
        store = self.server.store if self.server is not None else None
        return {"epoch": self.epochs.last_epoch() if self.epochs else 0,
                "max_offset": store_max(store) if store is not None else 0,
                "confirm_offset": store_confirm(store) if store is not None else 0}

    async def on_role_change(self, master_id: int | None, master_address: str, master_ha_address: str,
                             master_epoch: int, sss: list[int] | set[int], sss_epoch: int) -> None:
        """The controller's view of the set (from a notification, a pull or a registration)."""
        assert self._lock is not None
        async with self._lock:
            following = self.master_ha if self._role in (Role.FOLLOWER, Role.LEARNER) else ""
            change = decide(self._role, self._epoch, self.broker_id, self.config.ha_learner, master_id, master_epoch,
                            master_ha_address, following)
            if change in (Change.IGNORE, Change.KEEP):
                return
            if change is Change.REFUSE_MASTER:
                log.error("controller made a learner master; refusing %s", kv(epoch=master_epoch))
            elif change is Change.ADOPT_SSS:
                if self.master is not None and self.master.sss.adopt(frozenset(sss), sss_epoch):
                    log.info("adopted sync-state-set %s", kv(members=sorted(sss), sss_epoch=sss_epoch))
            elif change is Change.BECOME_MASTER:
                await self._become_master(master_epoch, set(sss), sss_epoch)
            elif change is Change.FOLLOW:
                await self._become_follower(master_id or 0, master_address, master_ha_address, master_epoch)
            elif change is Change.NO_MASTER:
                if self._role is Role.MASTER and master_epoch > self._epoch:
                    await self._stop_master()
                    self._role = next_role(self._role, change, self.config.ha_learner)
                self._epoch = max(self._epoch, master_epoch)

    async def _become_master(self, epoch: int, sss: set[int], sss_epoch: int) -> None:
        assert self.server is not None and self.epochs is not None
        store = self.server.store
        loop = asyncio.get_running_loop()
        last = self.epochs.last()
        if master_epoch_start(last, epoch, 0) is None:
            log.warning("stale master epoch %s", kv(epoch=epoch, last=last.epoch if last else None))
            return
        await self._stop_follower()
        await self._stop_master()
        # seal: nothing more is appended by replication; the new epoch starts at our end
        start = master_epoch_start(last, epoch, store_max(store))
        assert start is not None
        append, end = start
        if append:
            await loop.run_in_executor(None, self.epochs.append, epoch, end)
        self._epoch = epoch
        self.master_id = self.broker_id
        self.master_addr = self.config.listen
        cfg = self.config
        settings = MasterSettings(frame_bytes=cfg.ha_frame_bytes, heartbeat_s=cfg.ha_heartbeat_s,
                                  idle_timeout_s=cfg.ha_idle_timeout_s, max_lag_s=cfg.ha_max_lag_s,
                                  ack_timeout_s=cfg.ha_ack_timeout_s, policy=self.policy,
                                  ssl=ha_server_ssl(cfg),
                                  handshake_timeout_s=cfg.ha_handshake_timeout_s,
                                  max_connections=cfg.ha_max_connections, max_handshakes=cfg.ha_max_handshakes,
                                  replace_after_s=2 * cfg.ha_heartbeat_s)
        state = SyncStateSet(self.broker_id, epoch, end, sss | {self.broker_id}, sss_epoch, settings.max_lag_s,
                             time.monotonic(), confirm_offset=store_confirm(store))
        self.master = HAMaster(store, self.epochs, self.broker_id, epoch, state, settings, self.config.ha_listen,
                               alter=self._alter, writable=self._refusal, replica_count=self._replica_count,
                               secret=load_secret(cfg.cluster_secret_file), replicas=self._replica_view)
        self._ha_port = await self.master.start()
        master, keep_s = self.master, self.config.ha_expiry_waits_s
        store.set_retention_floor(lambda: master.retention_floor(time.monotonic(), keep_s))
        self._role = Role.MASTER
        # the metadata snapshot waits until it is confirmed: write it without holding up writes
        self._snapshot_task = asyncio.create_task(self._write_snapshot(epoch))
        log.info("became master %s", kv(broker_set=self.config.broker_set, broker_id=self.broker_id, epoch=epoch,
                                         start=end, sss=sorted(state.members), sss_epoch=sss_epoch))
        self._registered_changed()

    async def _become_follower(self, master_id: int, master_addr: str, master_ha: str, epoch: int) -> None:
        assert self.server is not None and self.epochs is not None
        await self._stop_master()
        await self._stop_follower()
        self._epoch = epoch
        self.master_id, self.master_addr, self.master_ha = master_id, master_addr, master_ha
        self._role = next_role(self._role, Change.FOLLOW, self.config.ha_learner)
        if master_ha:
            fs = FollowerSettings(heartbeat_s=self.config.ha_heartbeat_s, idle_timeout_s=self.config.ha_idle_timeout_s,
                                  ssl=ha_client_ssl(self.config))
            self.follower = HAFollower(self.server.store, self.epochs, self.broker_id, self.config.ha_learner,
                                       master_ha, fs, min_master_epoch=epoch, truncations=self.truncations,
                                       secret=load_secret(self.config.cluster_secret_file))
            self.follower.start()
        log.info("following %s", kv(broker_set=self.config.broker_set, broker_id=self.broker_id, epoch=epoch,
                                     master_id=master_id, master_ha=master_ha, learner=self.config.ha_learner))
        self._registered_changed()

    async def _write_snapshot(self, epoch: int) -> None:
        store = self.server.store if self.server is not None else None
        if store is None or not hasattr(store, "append_meta_snapshot"):
            return
        try:
            r = await asyncio.get_running_loop().run_in_executor(None, store.append_meta_snapshot)
            log.info("metadata snapshot written %s", kv(epoch=epoch, offset=r.physical_offset))
        except Exception as e:  # noqa: BLE001 - the next master writes one again
            log.warning("metadata snapshot failed %s", kv(epoch=epoch, error=e))

    async def _stop_master(self) -> None:
        if self.master is not None:
            m, self.master = self.master, None
            if self.server is not None and self.server.store is not None:
                self.server.store.set_retention_floor(None)
            await m.stop()

    async def _stop_follower(self) -> None:
        if self.follower is not None:
            f, self.follower = self.follower, None
            await f.stop()

    def _registered_changed(self) -> None:
        if self.server is not None and self.server.registrar is not None:
            self.server.registrar.register_now()

    def _replica_count(self) -> int:
        """Non-learner replicas registered with the controller (the automatic minimum uses it)."""
        view = getattr(self.agent, "view", None)
        if view is None:
            return 1
        cached = self._count_cache
        if cached is not None and cached[0] is view:
            return cached[1]
        n = max(1, sum(1 for r in view.replicas if not r.learner))
        self._count_cache = (view, n)
        return n

    def _replica_view(self) -> dict[int, bool] | None:
        """The controller's view of this set's replicas (id -> learner) for HELLO admission; None
        before the agent has one."""
        view = getattr(self.agent, "view", None)
        if view is None:
            return None
        return {int(r.broker_id): bool(r.learner) for r in view.replicas}

    async def _alter(self, members: frozenset[int], sss_epoch: int) -> tuple[bool, list[int] | None, int | None]:
        return await self.agent.alter_sync_state_set(self._epoch, sorted(members), sss_epoch)

    # ---- graceful handoff (the rules: ha/handoff.py) -------------------------------------------------

    async def before_stop(self) -> None:
        """SIGTERM: a master hands mastership to a caught-up replica before the broker stops."""
        if self._role is Role.MASTER and self.config.ha_handoff_timeout_s > 0:
            r = await self.hand_off(0, self.config.ha_handoff_timeout_s, leaving=True)
            if not r["ok"]:
                log.warning("no handoff before stopping %s", kv(code=r["code"], reason=r["reason"]))

    async def _hold(self) -> None:
        """The send gate while handing off: wait (bounded) until the handoff is over."""
        ev, h = self._released, self._handoff
        if ev is None or h is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), max(0.05, h.deadline - time.monotonic() + 1.0))

    async def hand_off(self, successor: int = 0, timeout_s: float = 5.0, leaving: bool = False) -> dict[str, Any]:
        """Hand mastership to `successor` (0: the caught-up member holding the most) without
        failing a send: hold new sends, let in-flight ones be acknowledged, wait until the
        successor holds the whole log, have the controller elect it (a new epoch whose
        sync-state-set leaves this replica out), follow it, then let the held sends go on: they
        are answered NOT_MASTER with the new master's address. Before the election any failure
        leaves this replica master and the held sends are served here. `leaving` (SIGTERM): the
        new sync-state-set leaves this replica out, so the new master never waits for it."""
        t0 = time.monotonic()
        out: dict[str, Any] = {"ok": False, "code": "", "reason": "", "master_id": self.master_id or 0,
                               "master_address": self.master_address(), "epoch": self._epoch}
        try:
            if self._role is not Role.MASTER or self.master is None:
                raise HandoffRefused("NOT_MASTER", f"broker {self.config.broker_set}/{self.broker_id} is {self._role}, "
                                     "not master")
            if self._handoff is not None:
                raise HandoffRefused("IN_PROGRESS", f"a handoff to broker {self._handoff.successor} is in progress")
            m = self.master
            acks = {c.broker_id: c.ack for c in m.conns.values()}
            learners = {c.broker_id for c in m.conns.values() if c.machine.learner}
            target = choose_successor(self.broker_id, m.sss.members, acks, learners, successor)
            h = self._handoff = Handoff(target, t0 + timeout_s)
            self._released = asyncio.Event()
            self.send_gate = self._hold
            log.info("handing off %s", kv(broker_set=self.config.broker_set, broker_id=self.broker_id,
                                           to=target, epoch=self._epoch))
            await self._handoff_steps(h, leaving)
            out.update(ok=True, code="", reason=f"handed off to {target}")
        except HandoffRefused as e:
            out.update(code=e.code, reason=e.reason)
        finally:
            self._handoff = None
            self.send_gate = None
            if self._released is not None:
                self._released.set()
                self._released = None
        out.update(master_id=self.master_id or 0, master_address=self.master_address(), epoch=self._epoch,
                   seconds=round(time.monotonic() - t0, 4))
        self.handoffs.append(out)
        log.info("handoff %s", kv(ok=out["ok"], code=out["code"], reason=out["reason"], master=out["master_id"],
                                  epoch=out["epoch"], seconds=out["seconds"]))
        return out

    async def _handoff_steps(self, h: Handoff, leaving: bool) -> None:
        store = self.server.store
        while True:   # DRAIN, CATCH_UP
            m = self.master
            if m is None or self._role is not Role.MASTER:
                raise HandoffRefused("NOT_MASTER", "stopped being master during the handoff")
            c = m.conns.get(h.successor)
            step = h.advance(time.monotonic(), len(m._waiters), c.ack if c is not None else -1, store_max(store))
            if step is Step.FAILED:
                raise HandoffRefused("TIMEOUT", f"broker {h.successor} did not catch up in time; still master")
            if step is Step.ELECT:
                break
            m.notify_data()
            await asyncio.sleep(0.002)
        try:
            r = await asyncio.wait_for(self.agent.client.elect_master(
                self.config.cluster, self.config.broker_set, h.successor, designate=True, handoff=leaving),
                max(0.5, h.deadline - time.monotonic()))
        except Exception as e:  # noqa: BLE001 - the election may still have committed: the view says
            log.warning("handoff election call failed %s", kv(error=e))
            r = None
        if r is None or not r.result.ok:
            view = await self._fresh_view()
            if view is None or view.master_id != h.successor or view.master_epoch <= self._epoch:
                h.step = Step.FAILED
                raise HandoffRefused(r.result.code if r is not None else "UNAVAILABLE",
                                     r.result.reason if r is not None else "the controller did not answer")
        else:
            view = r.view
        h.advance(time.monotonic(), 0, 0, 0, elected=True)
        self.agent._offer(view)   # act on the new epoch now rather than on the push
        while h.step is Step.AWAIT_ROLE:
            following = self._role is not Role.MASTER and self.follower is not None and self.follower.connected
            h.advance(time.monotonic(), 0, 0, 0, elected=True, following=following)
            await asyncio.sleep(0.002)

    async def _fresh_view(self) -> Any:
        try:
            return await self.agent.client.get_replica_info(self.config.cluster, self.config.broker_set)
        except Exception:  # noqa: BLE001
            return None

    # ---- the send path ----------------------------------------------------------------------------

    def _refusal(self) -> ReplicationError | None:
        if self._role is not Role.MASTER or self.master is None:
            return ReplicationError("NOT_MASTER", f"broker {self.config.broker_set}/{self.broker_id} is "
                                    f"{self._role}, not master", self.master_addr)
        if not self.lease.valid(time.monotonic()):
            return ReplicationError("FENCED", f"master {self.config.broker_set}/{self.broker_id} epoch {self._epoch} "
                                    "has not renewed its lease with the controller")
        return None

    def check_writable(self) -> None:
        if not self.config.writable:
            raise ReplicationError("NO_PERMISSION", "broker is read-only")
        if self._handoff is not None:   # a write that did not wait at the send gate
            raise ReplicationError("NOT_MASTER", f"master {self.config.broker_set}/{self.broker_id} is handing off "
                                   f"to broker {self._handoff.successor}")
        r = self._refusal()
        if r is not None:
            raise r
        if self.master.verdict(0) is Verdict.NOT_ENOUGH:  # known before writing: store nothing (issue 8)
            raise ReplicationError("IN_SYNC_REPLICAS_NOT_ENOUGH", f"sync-state-set {sorted(self.master.sss.ack_set())} "
                                   "is smaller than the replicas required")

    async def wait_replicated(self, end_offset: int) -> None:
        m = self.master
        if m is None or self._role is not Role.MASTER:
            raise ReplicationError("NOT_MASTER", "stopped being master before the send was replicated",
                                   self.master_addr)
        await m.wait_replicated(end_offset)
        r = self._refusal()  # never acknowledge into an epoch that may have been replaced
        if r is not None:
            raise r

    # ---- role info --------------------------------------------------------------------------------

    def role(self) -> str:
        return self._role.value

    def is_master(self) -> bool:
        return self._role is Role.MASTER

    def epoch(self) -> int:
        return self._epoch

    def ha_address(self) -> str:
        return self.config.ha_address or self.config.ha_listen

    def master_address(self) -> str:
        return self.config.listen if self._role is Role.MASTER else self.master_addr

    async def _publish_status(self) -> None:
        """HA state into the service's status counters (GetBrokerStatus `stats`, keys ha_*)."""
        while True:
            await asyncio.sleep(0.2)
            srv = self.server
            if srv is None or srv.service is None:
                continue
            st = srv.service.stats
            st["ha_role"] = self._role.value
            st["ha_broker_id"] = self.broker_id
            st["ha_lease_ok"] = int(self.lease.valid(time.monotonic()))
            st["ha_truncations"] = len(self.truncations)
            st["ha_truncated_bytes"] = sum(a - b for a, b in self.truncations)
            m = self.master
            st["ha_sss"] = ",".join(str(i) for i in sorted(m.sss.members)) if m is not None else ""
            st["ha_sss_epoch"] = m.sss.sss_epoch if m is not None else 0
            st["ha_lag"] = self.follower.lag() if self.follower is not None else 0

    def status(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self._role.value, "epoch": self._epoch, "broker_id": self.broker_id,
                             "lease_ok": self.lease.valid(time.monotonic())}
        if self.master is not None:
            d.update(sss=sorted(self.master.sss.members), sss_epoch=self.master.sss.sss_epoch,
                     acks={c.broker_id: c.ack for c in self.master.conns.values()})
        if self.follower is not None:
            d.update(following=self.master_ha, lag=self.follower.lag(), connected=self.follower.connected,
                     truncations=self.follower.truncations)
        return d


def make_hooks(config: BrokerConfig) -> ReplicationHooks | None:
    """The hooks for `config.ha_mode`: None (standalone default) or a RoleManager."""
    if getattr(config, "ha_mode", "standalone") == "controller":
        # consumers must never see what a failover could truncate, not even right after a restart:
        # the store dispatches only up to the confirm offset we set (from the moment it opens)
        config.store.setdefault("auto_confirm", False)
        return RoleManager(config)
    return None
