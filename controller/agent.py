"""The broker-side controller agent: the one place a broker talks to the controllers.

Owns: the broker's identity file (`<dir>/controller-identity`, "cluster#set#id#checkcode", with a
`-temp` file while an id is being applied for, as RocketMQ 5.1.1: apply, write, register), the
registration, a heartbeat session to the controller leader every `heartbeat_s` (each answer renews
the broker's lease via `hooks.heartbeat_ok(sent_at)`), delivery of role changes (pushed on the
session, pulled with GetReplicaInfo every `poll_s` as the safety net) to
`hooks.on_role_change(...)`, and `alter_sync_state_set(...)` for a master.

Hooks (the broker's RoleManager): `set_broker_id(id)`, `heartbeat_ok(sent_at)`, `live_info() ->
{epoch, max_offset, confirm_offset}`, `async on_role_change(master_id, master_address,
master_ha_address, master_epoch, sss, sss_epoch)`.

Also runnable alone (`python -m orbitmq.controller.agent --help`): a stand-in broker that prints
every event as a JSON line, for controller tests and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from orbitmq.common.durable import remove_file, replace_file
from orbitmq.common.logs import kv
from orbitmq.common.node_auth import load_secret
from orbitmq.common.tls import from_config as tls_from_config
from orbitmq.controller.client import ControllerClient, ControllerError, NotLeader, map_error
from orbitmq.controller.refusals import Refusal
from orbitmq.protos import controller_pb2 as pb

log = logging.getLogger("orbitmq.controller.agent")

IDENTITY = "controller-identity"
TEMP = "controller-identity-temp"


class IdentityError(Exception):
    """The identity file is unreadable or belongs to another broker set."""


class AgentHooks(Protocol):
    def set_broker_id(self, broker_id: int) -> None: ...
    def heartbeat_ok(self, sent_at: float) -> None: ...
    def live_info(self) -> dict[str, int]: ...
    async def on_role_change(self, master_id: int | None, master_address: str, master_ha_address: str,
                             master_epoch: int, sss: list[int], sss_epoch: int) -> None: ...


@dataclass
class AgentSettings:
    controllers: list[str]
    cluster: str
    broker_set: str
    address: str
    identity_dir: str
    broker_id: int = 0          # requested id; 0: take the controller's next id
    ha_address: str = ""
    learner: bool = False
    heartbeat_s: float = 0.5
    poll_s: float = 2.0
    election_priority: int = 0
    rpc_timeout_s: float = 2.0
    secret: bytes | None = None    # the cluster secret: every call to the controllers is signed with it
    tls: Any = None                # common.tls.TlsConfig the controllers are dialed with (None: plaintext)
    extra: dict[str, Any] = field(default_factory=dict)


# ---- identity file ------------------------------------------------------------------------------------



def read_identity(path: Path) -> tuple[str, str, int, str]:
    """Parse the identity file at `path`; any unreadable or malformed content is an IdentityError
    naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise IdentityError(f"{path}: cannot read the broker identity ({e})") from None
    return parse_identity(text, str(path))


def parse_identity(text: str, where: str) -> tuple[str, str, int, str]:
    """(cluster, set, id, check code) from "cluster#set#id#checkcode"."""
    parts = text.strip().split("#")
    if len(parts) != 4 or not parts[2].isdigit() or int(parts[2]) < 1:
        raise IdentityError(f"{where}: malformed identity {text.strip()[:200]!r} (want cluster#set#id#checkcode; "
                            "restore it, or remove it to apply for a new broker id)")
    return parts[0], parts[1], int(parts[2]), parts[3]


def format_identity(cluster: str, broker_set: str, broker_id: int, check_code: str) -> str:
    for name, v in (("cluster", cluster), ("broker set", broker_set), ("check code", check_code)):
        if "#" in v or "\n" in v:
            raise IdentityError(f"{name} {v!r} may not contain '#' or newlines")
    return f"{cluster}#{broker_set}#{broker_id}#{check_code}\n"


class BrokerAgent:
    """Registers one broker with the controllers and keeps it informed; see the module doc."""

    def __init__(self, settings: AgentSettings, hooks: AgentHooks) -> None:
        self.s = settings
        self.hooks = hooks
        self.client = ControllerClient(settings.controllers, rpc_timeout_s=settings.rpc_timeout_s,
                                       retry_deadline_s=max(2.0, 4 * settings.rpc_timeout_s), secret=settings.secret,
                                       tls=settings.tls or False)
        self.broker_id = 0
        self.check_code = ""
        self.registered = asyncio.Event()
        self.view: pb.CtlSetView | None = None
        self._delivered: tuple | None = None
        self._latest: pb.CtlSetView | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._need_register = False
        self._stopping = False
        self.heartbeats_acked = 0
        self._seq = 0

    @classmethod
    def for_broker(cls, config: Any, hooks: AgentHooks) -> BrokerAgent:
        """The agent for a `BrokerConfig` in controller mode."""
        s = AgentSettings(
            controllers=list(config.controllers), cluster=config.cluster, broker_set=config.broker_set,
            address=config.listen, identity_dir=str(config.store_dir), broker_id=int(config.broker_id),
            ha_address=getattr(config, "ha_address", "") or getattr(config, "ha_listen", ""),
            learner=bool(getattr(config, "ha_learner", False)),
            heartbeat_s=float(getattr(config, "controller_heartbeat_s", 0.5)),
            election_priority=int(getattr(config, "election_priority", 0)),
            secret=load_secret(getattr(config, "cluster_secret_file", "")),
            tls=tls_from_config(config))
        return cls(s, hooks)

    # ---- lifecycle ------------------------------------------------------------------------------------

    async def start(self, wait_registered_s: float = 0.0) -> None:
        """Start registering and heartbeating in the background (optionally wait for registration).
        Raises IdentityError at once if this store's identity file is unreadable or not ours."""
        Path(self.s.identity_dir).mkdir(parents=True, exist_ok=True)
        self.check_identity_file()
        self._tasks = [asyncio.create_task(self._main()), asyncio.create_task(self._deliver_loop())]
        if wait_registered_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.registered.wait(), wait_registered_s)

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.client.close()

    # ---- identity and registration -------------------------------------------------------------------

    def check_identity_file(self) -> tuple[int, str] | None:
        """(id, check code) from this store's identity file, None if it has none yet."""
        ident = Path(self.s.identity_dir) / IDENTITY
        if not ident.exists():
            return None
        c, b, i, code = read_identity(ident)
        if (c, b) != (self.s.cluster, self.s.broker_set):
            raise IdentityError(f"{ident}: this store belongs to {c}/{b}, not {self.s.cluster}/{self.s.broker_set}")
        return i, code

    async def ensure_identity(self) -> tuple[int, str]:
        """The broker's id and check code, applying for an id if this store has none yet."""
        d = Path(self.s.identity_dir)
        ident, temp = d / IDENTITY, d / TEMP
        known = self.check_identity_file()
        if known is not None:
            i, code = known
            if self.s.broker_id and i != self.s.broker_id:
                log.warning("identity file wins over the configured id %s", kv(file_id=i, configured=self.s.broker_id))
            return i, code
        if temp.exists():
            try:
                c, b, i, code = read_identity(temp)
                if (c, b) == (self.s.cluster, self.s.broker_set):
                    r = await self.client.apply_broker_id(c, b, i, code)
                    if r.ok:
                        replace_file(ident, format_identity(c, b, i, code))
                        remove_file(temp)
                        return i, code
                    log.warning("resumed id application refused %s", kv(broker_id=i, code=r.code, reason=r.reason))
            except IdentityError as e:
                log.warning("discarding temp identity: %s", e)
            remove_file(temp)
        for _ in range(5):
            want = self.s.broker_id or await self.client.get_next_broker_id(self.s.cluster, self.s.broker_set)
            code = f"{self.s.address};{int(time.time() * 1000)}"
            replace_file(temp, format_identity(self.s.cluster, self.s.broker_set, want, code))
            r = await self.client.apply_broker_id(self.s.cluster, self.s.broker_set, want, code)
            if r.ok:
                replace_file(ident, format_identity(self.s.cluster, self.s.broker_set, want, code))
                remove_file(temp)
                return want, code
            remove_file(temp)
            if self.s.broker_id:
                raise IdentityError(f"broker id {want} refused: {r.code}: {r.reason}")
            await asyncio.sleep(0.05)
        raise IdentityError("could not obtain a broker id in 5 tries")

    async def register(self) -> pb.CtlSetView:
        if not self.broker_id:
            self.broker_id, self.check_code = await self.ensure_identity()
            self.hooks.set_broker_id(self.broker_id)
        for _ in range(2):
            r = await self.client.register_broker(self.s.cluster, self.s.broker_set, self.broker_id, self.s.address,
                                                  self.s.ha_address, self.s.learner, self.check_code)
            if r.result.ok:
                log.info("registered with the controller %s", kv(set=f"{self.s.cluster}/{self.s.broker_set}",
                                                                  broker_id=self.broker_id, learner=self.s.learner))
                self.registered.set()
                self._need_register = False
                self._offer(r.view)
                return r.view
            if r.result.code in (Refusal.SET_NOT_FOUND, Refusal.BROKER_ID_INVALID) and "not applied" in r.result.reason \
                    or r.result.code == Refusal.SET_NOT_FOUND:
                # our data was cleaned from the controller: apply again for our own id
                a = await self.client.apply_broker_id(self.s.cluster, self.s.broker_set, self.broker_id,
                                                      self.check_code)
                if a.ok:
                    continue
            raise ControllerError(r.result.code, r.result.reason)
        raise ControllerError("REGISTER_FAILED", "registration refused")

    async def _main(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                await self.register()
                break
            except IdentityError as e:
                log.error("broker identity: %s", e)
                await asyncio.sleep(2.0)
            except (ControllerError, grpc.RpcError, OSError) as e:
                log.warning("registration failed, retrying %s", kv(error=e))
                await asyncio.sleep(backoff)
                backoff = min(1.0, backoff * 2)
            except Exception:  # noqa: BLE001 - never die silently: say why, and try again
                log.exception("registration with the controller failed unexpectedly; retrying")
                await asyncio.sleep(1.0)
        await asyncio.gather(self._session_loop(), self._poll_loop())

    # ---- heartbeats and notifications ---------------------------------------------------------------

    def _heartbeat(self, seq: int) -> pb.CtlHeartbeatRequest:
        li = self.hooks.live_info()
        return pb.CtlHeartbeatRequest(cluster=self.s.cluster, broker_set=self.s.broker_set, broker_id=self.broker_id,
                                      epoch=int(li.get("epoch", 0)), max_offset=int(li.get("max_offset", 0)),
                                      confirm_offset=int(li.get("confirm_offset", 0)),
                                      election_priority=self.s.election_priority, seq=seq, address=self.s.address)

    async def _session_loop(self) -> None:
        while not self._stopping:
            if self._need_register:
                with contextlib.suppress(ControllerError, grpc.RpcError):
                    await self.register()
            await self._one_session()
            await asyncio.sleep(0.05)

    async def _one_session(self) -> None:
        """One BrokerSession stream to the leader guess, until it ends or stalls."""
        sent: dict[int, float] = {}
        last_ack = time.monotonic()

        async def requests() -> AsyncIterator[pb.CtlHeartbeatRequest]:
            while True:
                self._seq += 1
                sent[self._seq] = time.monotonic()
                yield self._heartbeat(self._seq)
                await asyncio.sleep(self.s.heartbeat_s)

        addr, call = self.client.session(requests())

        async def watchdog() -> None:   # a stalled controller (SIGSTOP, partition): go elsewhere
            stale = max(1.0, 3 * self.s.heartbeat_s)
            while True:
                await asyncio.sleep(self.s.heartbeat_s / 2)
                if time.monotonic() - last_ack > stale:
                    log.warning("controller session stalled %s", kv(controller=addr))
                    call.cancel()
                    self.client._rotate(addr, failed_hard=True)
                    return

        dog = asyncio.create_task(watchdog())
        try:
            async for ev in call:
                if ev.ack_seq:
                    t = sent.pop(ev.ack_seq, None)
                    for old in [k for k in sent if k < ev.ack_seq]:
                        del sent[old]
                    if t is not None:
                        last_ack = time.monotonic()
                        self.heartbeats_acked += 1
                        self.hooks.heartbeat_ok(t)
                if ev.HasField("view"):
                    self._offer(ev.view)
        except grpc.RpcError as e:
            err = map_error(e, addr)
            if isinstance(err, NotLeader):
                self.client._rotate(addr, err.leader)
            elif e.code() != grpc.StatusCode.CANCELLED:
                self.client._rotate(addr, failed_hard=True)
                log.debug("session ended %s", kv(controller=addr, error=err))
        except asyncio.CancelledError:
            call.cancel()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise            # we are being stopped
            # else: the watchdog cancelled a stalled call; try the next controller
        finally:
            dog.cancel()

    async def _poll_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.s.poll_s)
            try:
                v = await self.client.get_replica_info(self.s.cluster, self.s.broker_set)
                self._offer(v)
            except (ControllerError, grpc.RpcError) as e:
                log.debug("replica info poll failed %s", kv(error=e))

    def _offer(self, v: pb.CtlSetView) -> None:
        """A view from a push, an ack, a poll or a registration; the newest one is delivered. Its
        controller list (the current Raft members) replaces ours."""
        self.client.learn(v.controllers)
        if not v.exists or all(r.broker_id != self.broker_id for r in v.replicas):
            if self.registered.is_set():
                self._need_register = True   # the controller forgot us (cleaned): register again
            return
        cur = self._latest or self.view
        if cur is not None and (v.master_epoch, v.sss_epoch) < (cur.master_epoch, cur.sss_epoch):
            return
        self._latest = v
        self._wake.set()

    async def _deliver_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            v, self._latest = self._latest, None
            if v is None:
                continue
            self.view = v
            sig = (v.master_id, v.master_epoch, v.sss_epoch, v.master_address, v.master_ha_address)
            if sig == self._delivered:
                continue
            self._delivered = sig
            try:
                await self.hooks.on_role_change(v.master_id or None, v.master_address, v.master_ha_address,
                                                v.master_epoch, list(v.sync_state_set), v.sss_epoch)
            except Exception:  # noqa: BLE001 - the broker logs its own failure; the next view retries
                log.exception("role change handler failed")
                self._delivered = None

    # ---- for the master -----------------------------------------------------------------------------

    async def alter_sync_state_set(self, master_epoch: int, members: list[int],
                                   sss_epoch: int) -> tuple[bool, list[int] | None, int | None]:
        """Ask the controller to replace the sync-state-set: (ok, the set, its epoch)."""
        r = await self.client.alter_sync_state_set(self.s.cluster, self.s.broker_set, self.broker_id, master_epoch,
                                                   members, sss_epoch)
        if r.result.ok:
            return True, list(r.sync_state_set), r.sss_epoch
        log.warning("sync-state-set change refused %s", kv(code=r.result.code, reason=r.result.reason))
        return False, (list(r.sync_state_set) if r.sss_epoch else None), (r.sss_epoch or None)


# ---- standalone: a stand-in broker for tests and benchmarks --------------------------------------------

class PrintingHooks:
    """Hooks of a stand-in broker: prints events as JSON lines; as master, adds every live
    registered non-learner replica to the sync-state-set (with --auto-sss)."""

    def __init__(self, max_offset: int, auto_sss: bool) -> None:
        self.epoch = 0
        self.max_offset = max_offset
        self.auto_sss = auto_sss
        self.agent: BrokerAgent | None = None
        self.master_epoch = 0
        self.is_master = False
        self.last_ok_sent: float | None = None

    def emit(self, **fields: Any) -> None:
        print(json.dumps({"t": time.time(), **fields}), flush=True)

    def set_broker_id(self, broker_id: int) -> None:
        self.emit(event="broker_id", broker_id=broker_id)

    def heartbeat_ok(self, sent_at: float) -> None:
        # the gap between the send times of answered heartbeats: a master with a lease shorter
        # than this gap fences itself for the difference
        if self.last_ok_sent is not None and sent_at - self.last_ok_sent > 1.0:
            self.emit(event="heartbeat_gap", gap_s=round(sent_at - self.last_ok_sent, 3))
        if self.last_ok_sent is None or sent_at > self.last_ok_sent:
            self.last_ok_sent = sent_at

    def live_info(self) -> dict[str, int]:
        return {"epoch": self.epoch, "max_offset": self.max_offset, "confirm_offset": self.max_offset}

    async def on_role_change(self, master_id: int | None, master_address: str, master_ha_address: str,
                             master_epoch: int, sss: list[int], sss_epoch: int) -> None:
        assert self.agent is not None
        self.epoch = max(self.epoch, master_epoch)
        self.master_epoch = master_epoch
        self.is_master = master_id == self.agent.broker_id
        self.emit(event="role", broker_id=self.agent.broker_id, master_id=master_id or 0, master_epoch=master_epoch,
                  master_address=master_address, sss=sorted(sss), sss_epoch=sss_epoch,
                  role="master" if self.is_master else ("none" if not master_id else "follower"))

    async def auto_sss_loop(self) -> None:
        while self.auto_sss:
            await asyncio.sleep(0.5)
            a = self.agent
            if a is None or not self.is_master or a.view is None:
                continue
            v = a.view
            # only adds (a real master removes members that stop replicating; liveness alone may
            # be missing for a while after a controller leader change)
            want = sorted(set(v.sync_state_set) | {a.broker_id}
                          | {r.broker_id for r in v.replicas if r.alive and not r.learner})
            if v.master_id == a.broker_id and want != sorted(v.sync_state_set):
                with contextlib.suppress(ControllerError, grpc.RpcError):
                    ok, members, epoch = await a.alter_sync_state_set(v.master_epoch, want, v.sss_epoch)
                    self.emit(event="alter", ok=ok, sss=members, sss_epoch=epoch)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orbitmq.controller.agent",
                                description="A stand-in broker: registers with the controllers, heartbeats, and "
                                            "prints role changes as JSON lines (tests and benchmarks).")
    p.add_argument("--controllers", required=True, help="comma-separated controller gRPC addresses")
    p.add_argument("--cluster", default="DefaultCluster")
    p.add_argument("--broker-set", required=True)
    p.add_argument("--broker-id", type=int, default=0, help="requested id (0: the controller's next id)")
    p.add_argument("--address", required=True, help="the broker address it announces")
    p.add_argument("--ha-address", default="")
    p.add_argument("--learner", action="store_true")
    p.add_argument("--identity-dir", required=True)
    p.add_argument("--heartbeat-s", type=float, default=0.3)
    p.add_argument("--poll-s", type=float, default=2.0)
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--max-offset", type=int, default=0, help="the max offset its heartbeats report")
    p.add_argument("--auto-sss", action="store_true", help="as master, add every live replica to the set")
    p.add_argument("--log-level", default="WARNING")
    return p


async def run_standalone(args: argparse.Namespace) -> None:
    hooks = PrintingHooks(args.max_offset, args.auto_sss)
    s = AgentSettings(controllers=[a for a in args.controllers.split(",") if a], cluster=args.cluster,
                      broker_set=args.broker_set, address=args.address, identity_dir=args.identity_dir,
                      broker_id=args.broker_id, ha_address=args.ha_address, learner=args.learner,
                      heartbeat_s=args.heartbeat_s, poll_s=args.poll_s, election_priority=args.priority)
    agent = BrokerAgent(s, hooks)
    hooks.agent = agent
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    sss_task = asyncio.create_task(hooks.auto_sss_loop())
    hooks.emit(event="started", pid=os.getpid())
    await stop.wait()
    sss_task.cancel()
    await agent.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from orbitmq.common import logs

    logs.setup("agent", args.log_level)
    asyncio.run(run_standalone(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
