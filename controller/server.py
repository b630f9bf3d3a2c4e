"""The controller node: gRPC service (grpc.aio) over the Raft-replicated state, the leader's
liveness table, failure detection, elections and role-change notifications.

Owns: request handling (only the leader serves; followers answer NOT_LEADER + the leader's
address), submitting commands through Raft and waiting for them to apply (with a timeout),
heartbeats and broker sessions (push of role changes), running the leader's scan
(controller/leader_scan.py, pure: dead masters, failed-election retries, pushes) on a timer and
carrying out what it returns, and `start_controller` / `namesrv_hook` to run standalone or
inside a name server. Liveness is never replicated: a new leader waits one heartbeat timeout to
rebuild it before it may elect anyone. Never decides an election itself (election.py does) and
never changes state except through Raft.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from orbitmq.common import grpc_errors
from orbitmq.common import tls as tlsmod
from orbitmq.common.error_codes import ErrorCode
from orbitmq.common.grpc_errors import MalformedRequestGuard, abort
from orbitmq.common.limits_grpc import InflightLimiter
from orbitmq.common.logs import kv
from orbitmq.common.node_auth_grpc import NodeAuthInterceptor
from orbitmq.common.observability import Observability
from orbitmq.common.tls_grpc import add_port
from orbitmq.controller import election as el
from orbitmq.controller import membership
from orbitmq.controller import state as st
from orbitmq.controller.auth_service import AuthRpcs
from orbitmq.controller.config import ControllerConfig
from orbitmq.controller.leader_scan import (
    Announce,
    BecameLeader,
    Elect,
    LeaderScan,
    Push,
    ScanSettings,
    StepDown,
)
from orbitmq.controller.liveness import Liveness
from orbitmq.controller.metrics import controller_rows
from orbitmq.controller.node_methods import protected_methods
from orbitmq.controller.raft import RaftNode, fail_name
from orbitmq.controller.refusals import Refusal
from orbitmq.protos import controller_pb2 as pb
from orbitmq.protos import controller_pb2_grpc as pbg

log = logging.getLogger("orbitmq.controller")

ERROR_KEY, LEADER_KEY = grpc_errors.ERROR_KEY, grpc_errors.LEADER_KEY   # kept for importers


class CommitError(Exception):
    """A command was not committed (timeout, lost leadership)."""


@dataclass(eq=False)
class Session:
    gen: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    key: st.SetKey | None = None
    broker_id: int = 0


def _result(r: st.Result) -> pb.CtlResult:
    return pb.CtlResult(ok=r.ok, code=str(r.code), reason=r.reason)


def _check_refusals_against_proto() -> None:
    proto = set(pb.CtlResult.Code.keys()) - {"CODE_UNSPECIFIED"}
    ours = {r.value for r in Refusal}
    if proto != ours:
        raise ImportError(f"controller/refusals.py differs from controller.proto CtlResult.Code: only in the proto "
                          f"{sorted(proto - ours)}, only in Python {sorted(ours - proto)}")


_check_refusals_against_proto()


class ControllerService(AuthRpcs, pbg.ControllerServicer):
    """One node's service. Create inside a running event loop; `start()` begins the scan."""

    def __init__(self, cfg: ControllerConfig) -> None:
        self.cfg = cfg
        self.loop = asyncio.get_running_loop()
        self.raft = RaftNode(cfg, on_applied=self._applied_on_raft_thread)
        self.live = Liveness(cfg.heartbeat_timeout_s, cfg.broker_lease_s)
        self.sessions: dict[st.SetKey, set[Session]] = {}
        self._gens = itertools.count(1)
        self.scan = LeaderScan(ScanSettings(cfg.liveness_rebuild_s, cfg.election_retry_s, cfg.unclean_election,
                                            leader_fallback_s=cfg.raft_max_timeout_s))
        self._scan_task: asyncio.Task | None = None
        self.commands_committed = 0
        self._self_announce_at = 0.0
        self._membership_lock = asyncio.Lock()     # one membership change at a time on this node

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._scan_task = asyncio.create_task(self._scan_forever())

    async def stop(self) -> None:
        if self._scan_task is not None:
            self._scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._scan_task
        self._close_sessions()
        await asyncio.get_running_loop().run_in_executor(None, self.raft.destroy)

    # ---- leadership -----------------------------------------------------------------------------------

    def leader_address(self) -> str:
        raft = self.raft.leader_raft_address()
        if not raft:
            return ""
        if raft == self.cfg.raft_addr:
            return self.cfg.listen
        return self.raft.read(lambda s: s.nodes.get(raft, ""))

    def serving(self) -> bool:
        if self.raft.joining or self.raft.retired:
            return False
        return self.scan.serving(self.raft.is_leader(), self.raft.majority_contact_age())

    def liveness_ready(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.serving() and self.scan.liveness_ready(now)

    async def _not_leader(self, context: grpc.aio.ServicerContext) -> None:
        leader = self.leader_address() if not self.raft.is_leader() else ""
        await abort(context, ErrorCode.NOT_LEADER,
                    f"controller {self.cfg.name} is not the leader" + (f"; leader is {leader}" if leader else
                                                                        "; no leader known"),
                    status=grpc.StatusCode.FAILED_PRECONDITION, leader=leader)

    async def _require_leader(self, context: grpc.aio.ServicerContext) -> None:
        if not self.serving():
            await self._not_leader(context)

    # ---- commands through Raft ---------------------------------------------------------------------

    def _applied_on_raft_thread(self, cmd: st.Command, result: st.Result) -> None:
        key = getattr(cmd, "cluster", None), getattr(cmd, "broker_set", None)
        if result.ok and key[0] is not None:
            self.loop.call_soon_threadsafe(self._push_if_changed, key, type(cmd).__name__)

    async def commit(self, cmd: st.Command) -> st.Result:
        """Submit `cmd` on this (leader) node and wait until it is applied; CommitError otherwise."""
        fut: asyncio.Future = self.loop.create_future()

        def done(result: Any, err: int) -> None:
            def settle() -> None:
                if not fut.done():
                    if err == 0:
                        fut.set_result(result)
                    else:
                        fut.set_exception(CommitError(f"not committed: {fail_name(err)}"))
            self.loop.call_soon_threadsafe(settle)

        self.raft.submit(cmd, done)
        try:
            result = await asyncio.wait_for(fut, self.cfg.commit_timeout_s)
        except TimeoutError:
            raise CommitError(f"not committed by a majority within {self.cfg.commit_timeout_s} s "
                              "(no quorum?); it may still commit later") from None
        self.commands_committed += 1
        return result

    async def _commit_rpc(self, cmd: st.Command, context: grpc.aio.ServicerContext) -> st.Result:
        try:
            return await self.commit(cmd)
        except CommitError as e:
            await abort(context, ErrorCode.REPLICATION_TIMEOUT, str(e))
            raise AssertionError("unreachable") from None

    # ---- views ------------------------------------------------------------------------------------------

    def _alive(self, key: st.SetKey, broker_id: int, now: float) -> bool:
        return self.live.alive((key, broker_id), now)

    def controllers(self) -> list[str]:
        """Every member's gRPC address (empty while one is unknown): brokers and name servers
        replace their controller lists with it."""
        members = self.raft.members()
        return self.raft.read(lambda s: membership.controller_list(members, s.nodes))

    def view(self, cluster: str, broker_set: str, now: float | None = None) -> pb.CtlSetView:
        now = time.monotonic() if now is None else now
        members = self.raft.members()

        def build(s: st.ControllerState) -> pb.CtlSetView:
            v = build_set(s)
            v.controllers.extend(membership.controller_list(members, s.nodes))
            return v

        def build_set(s: st.ControllerState) -> pb.CtlSetView:
            bs = s.get(cluster, broker_set)
            if bs is None:
                return pb.CtlSetView(cluster=cluster, broker_set=broker_set, exists=False, next_broker_id=1)
            key = (cluster, broker_set)
            m = bs.replicas.get(bs.master_id) if bs.master_id is not None else None
            v = pb.CtlSetView(cluster=cluster, broker_set=broker_set, exists=True, master_id=bs.master_id or 0,
                              master_address=m.address if m else "", master_ha_address=m.ha_address if m else "",
                              master_epoch=bs.master_epoch, sync_state_set=sorted(bs.sss), sss_epoch=bs.sss_epoch,
                              next_broker_id=bs.next_broker_id)
            for b in sorted(bs.replicas):
                r = bs.replicas[b]
                e = self.live.get((key, b))
                v.replicas.append(pb.CtlReplica(
                    broker_id=b, address=r.address, ha_address=r.ha_address, learner=r.learner,
                    alive=self._alive(key, b, now), epoch=e.live.epoch if e else 0,
                    max_offset=e.live.max_offset if e else 0, confirm_offset=e.live.confirm_offset if e else 0,
                    election_priority=e.live.priority if e else 0,
                    heartbeat_age_s=round(now - e.last_seen, 3) if e else -1.0))
            return v

        return self.raft.read(build)

    def _push_if_changed(self, key: st.SetKey, reason: str) -> None:
        push = self.raft.read(lambda s: self.scan.push_if_changed(key, s.sets.get(key), reason))
        if push is not None:
            self._push(push)

    def _push(self, push: Push) -> None:
        key = push.key
        subs = self.sessions.get(key)
        if subs:
            v = self.view(*key)
            ev = pb.CtlSessionEvent(view=v, reason=push.reason)
            for s in list(subs):
                s.queue.put_nowait(ev)
            log.info("pushed role change %s", kv(set=f"{key[0]}/{key[1]}", master=v.master_id,
                                                   epoch=v.master_epoch, sss=list(v.sync_state_set),
                                                   sessions=len(subs), reason=push.reason))

    # ---- liveness ---------------------------------------------------------------------------------------

    def record_heartbeat(self, req: pb.CtlHeartbeatRequest, gen: int = 0) -> None:
        self.live.record(((req.cluster, req.broker_set), req.broker_id),
                         el.Live(req.epoch, req.max_offset, req.confirm_offset, req.election_priority),
                         time.monotonic(), int(time.time() * 1000), gen)

    def _session_closed(self, sess: Session) -> None:
        if sess.key is None:
            return
        subs = self.sessions.get(sess.key)
        if subs is not None:
            subs.discard(sess)
        self.live.session_closed((sess.key, sess.broker_id), sess.gen)

    def _close_sessions(self) -> None:
        for subs in self.sessions.values():
            for s in subs:
                s.queue.put_nowait(None)
        self.sessions.clear()

    # ---- the leader's scan ------------------------------------------------------------------------------

    async def _scan_forever(self) -> None:
        while True:
            try:
                await self.scan_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep scanning
                log.exception("scan failed")
            await asyncio.sleep(self.cfg.scan_interval_s)

    def membership_tick(self, now: float) -> None:
        """Every node, every scan: finish joining once caught up; stop taking part in Raft once
        this node's removal (RetireNode) is applied here; make sure this node's gRPC address is
        in the replicated state (followers announce themselves through the leader)."""
        if self.raft.retired:
            return
        if self.raft.joining:
            self.raft.finish_join()
            return
        me = self.cfg.raft_addr
        known, retired = self.raft.read(lambda s: (s.nodes.get(me, ""), me in s.retired_nodes))
        if retired:
            log.warning("this node was removed from the controller group; it no longer takes part in Raft "
                        "and can be stopped %s", kv(node=self.cfg.name, raft=me))
            self._close_sessions()
            self.raft.retire()
            return
        if known != self.cfg.listen and not self.raft.is_leader() and self.raft.leader_raft_address() \
                and now - self._self_announce_at > 2.0:
            self._self_announce_at = now
            self.raft.submit(st.AnnounceNode(me, self.cfg.listen), lambda _r, _e: None)

    async def scan_once(self) -> None:
        """Run the pure leader scan (controller/leader_scan.py) and carry out what it returns."""
        now, now_ms = time.monotonic(), int(time.time() * 1000)
        self.membership_tick(now)
        if self.raft.retired:
            return
        is_leader, term = self.raft.is_leader(), self.raft.term()
        actions = self.raft.read(lambda s: self.scan.step(now, now_ms, is_leader, term, s, self.live))
        for a in actions:
            if isinstance(a, StepDown):
                log.info("no longer leader %s", kv(node=self.cfg.name))
                self._close_sessions()
            elif isinstance(a, BecameLeader):
                log.info("became leader; rebuilding liveness for %ss %s", self.cfg.liveness_rebuild_s,
                         kv(node=self.cfg.name, term=a.term))
            elif isinstance(a, Announce):
                asyncio.create_task(self._announce())
            elif isinstance(a, Push):
                self._push(a)
            elif isinstance(a, Elect):
                asyncio.create_task(self._auto_elect(a))

    async def _announce(self) -> None:
        ok = False
        try:
            r = await self.commit(st.AnnounceNode(self.cfg.raft_addr, self.cfg.listen))
            ok = r.ok and self.raft.is_leader()
            if ok:
                log.info("leader serving %s", kv(node=self.cfg.name, listen=self.cfg.listen))
                asyncio.create_task(self.bootstrap_admin())
        except CommitError as e:
            log.warning("leader announcement not committed %s", kv(error=e))
        finally:
            self.scan.announce_done(ok)

    async def _auto_elect(self, a: Elect) -> None:
        try:
            await self._commit_election(a.key, a.command, a.decision)
        except CommitError as e:
            log.warning("election not committed %s", kv(set=f"{a.key[0]}/{a.key[1]}", error=e))
        finally:
            self.scan.election_done(a.key)

    async def run_election(self, key: st.SetKey, preferred: int, designate: bool,
                           handoff: bool = False) -> tuple[st.Result, el.Decision]:
        """Decide with the current liveness (election.decide, through the scan) and commit the
        outcome. The old master counts as a candidate only while alive."""
        now, now_ms = time.monotonic(), int(time.time() * 1000)

        def decide(s: st.ControllerState) -> tuple[st.ElectMaster | None, el.Decision | None]:
            bs = s.sets.get(key)
            if bs is None:
                return None, None
            return self.scan.decide(key, bs, now, now_ms, self.live, preferred=preferred, designate=designate,
                                    handoff=handoff)

        cmd, d = self.raft.read(decide)
        if d is None:
            return st.Result.reject(Refusal.SET_NOT_FOUND, f"unknown broker set {key[0]}/{key[1]}"), \
                el.Decision(0, frozenset(), False, Refusal.SET_NOT_FOUND, "")
        if cmd is None:
            return st.Result.reject(d.code, d.reason), d
        return await self._commit_election(key, cmd, d), d

    async def _commit_election(self, key: st.SetKey, cmd: st.ElectMaster, d: el.Decision) -> st.Result:
        r = await self.commit(cmd)
        where = f"{key[0]}/{key[1]}"
        if cmd.master_id == 0:
            log.warning("set has no master %s", kv(set=where, why=d.reason, committed=r.ok))
        elif r.ok:
            log.info("elected master %s", kv(set=where, master=cmd.master_id, epoch=cmd.expected_master_epoch + 1,
                                              sss=sorted(cmd.new_sss), reason=cmd.reason))
        else:
            log.warning("election rejected %s", kv(set=where, code=r.code, reason=r.reason))
        if r.ok:
            self._push_if_changed(key, cmd.reason)
        return r

    # ---- RPCs ---------------------------------------------------------------------------------------------

    async def GetNextBrokerId(self, request, context):
        await self._require_leader(context)
        n = self.raft.read(lambda s: s.next_broker_id(request.cluster, request.broker_set))
        return pb.CtlGetNextBrokerIdReply(next_broker_id=n)

    async def ApplyBrokerId(self, request, context):
        await self._require_leader(context)
        r = await self._commit_rpc(st.ApplyBrokerId(request.cluster, request.broker_set, request.broker_id,
                                                    request.check_code), context)
        return pb.CtlApplyBrokerIdReply(result=_result(r), broker_id=r.broker_id)

    async def RegisterBroker(self, request, context):
        await self._require_leader(context)
        r = await self._commit_rpc(st.RegisterBroker(request.cluster, request.broker_set, request.broker_id,
                                                     request.address, request.ha_address, request.learner,
                                                     request.check_code), context)
        if r.ok:
            self.record_heartbeat(pb.CtlHeartbeatRequest(cluster=request.cluster, broker_set=request.broker_set,
                                                         broker_id=request.broker_id))
            log.info("registered %s", kv(set=f"{request.cluster}/{request.broker_set}", broker_id=request.broker_id,
                                          address=request.address, learner=request.learner))
        return pb.CtlRegisterBrokerReply(result=_result(r), view=self.view(request.cluster, request.broker_set))

    async def Heartbeat(self, request, context):
        await self._require_leader(context)
        self.record_heartbeat(request)
        return pb.CtlHeartbeatReply(view=self.view(request.cluster, request.broker_set))

    async def BrokerSession(self, request_iterator: AsyncIterator[pb.CtlHeartbeatRequest],
                            context) -> AsyncIterator[pb.CtlSessionEvent]:
        await self._require_leader(context)
        sess = Session(next(self._gens))

        async def read() -> None:
            try:
                async for hb in request_iterator:
                    if not self.serving():
                        break
                    key = (hb.cluster, hb.broker_set)
                    if sess.key is None:
                        sess.key, sess.broker_id = key, hb.broker_id
                        self.sessions.setdefault(key, set()).add(sess)
                    self.record_heartbeat(hb, sess.gen)
                    sess.queue.put_nowait(pb.CtlSessionEvent(ack_seq=hb.seq, view=self.view(*key)))
            except (grpc.RpcError, asyncio.CancelledError):
                pass
            finally:
                sess.queue.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                ev = await sess.queue.get()
                if ev is None:
                    break
                yield ev
        finally:
            reader.cancel()
            self._session_closed(sess)
        if not self.serving():
            await self._not_leader(context)

    async def GetReplicaInfo(self, request, context):
        await self._require_leader(context)
        return self.view(request.cluster, request.broker_set)

    async def AlterSyncStateSet(self, request, context):
        await self._require_leader(context)
        key = (request.cluster, request.broker_set)
        now = time.monotonic()
        cur = self.raft.read(lambda s: (s.sets[key].sss, s.sets[key].sss_epoch) if key in s.sets else None)
        new = frozenset(request.new_sync_state_set)
        if cur is not None:
            dead = sorted(b for b in new - cur[0] if not self._alive(key, b, now))
            if dead:
                return pb.CtlAlterSyncStateSetReply(
                    result=pb.CtlResult(ok=False, code=Refusal.BROKER_NOT_ALIVE, reason=f"broker(s) {dead} not alive"),
                    sync_state_set=sorted(cur[0]), sss_epoch=cur[1])
        r = await self._commit_rpc(st.AlterSyncStateSet(request.cluster, request.broker_set, request.master_id,
                                                        request.master_epoch, new, request.sss_epoch), context)
        if r.ok:
            log.info("sync-state-set %s", kv(set=f"{key[0]}/{key[1]}", sss=list(r.sss), sss_epoch=r.sss_epoch))
        return pb.CtlAlterSyncStateSetReply(result=_result(r), sync_state_set=list(r.sss), sss_epoch=r.sss_epoch)

    async def ElectMaster(self, request, context):
        await self._require_leader(context)
        key = (request.cluster, request.broker_set)
        if not self.liveness_ready():
            return pb.CtlElectMasterReply(result=pb.CtlResult(
                ok=False, code=Refusal.LIVENESS_NOT_READY,
                reason=f"new leader rebuilds liveness for {self.cfg.liveness_rebuild_s} s before electing"),
                view=self.view(*key))
        if key in self.scan.electing:
            return pb.CtlElectMasterReply(result=pb.CtlResult(ok=False, code=Refusal.ELECTION_IN_PROGRESS,
                                                              reason="an election for this set is in progress"),
                                          view=self.view(*key))
        self.scan.electing.add(key)
        try:
            r, _ = await self.run_election(key, request.broker_id, request.designate, request.handoff)
        except CommitError as e:
            await abort(context, ErrorCode.REPLICATION_TIMEOUT, str(e))
        finally:
            self.scan.election_done(key)
        return pb.CtlElectMasterReply(result=_result(r), view=self.view(*key))

    async def CleanBrokerData(self, request, context):
        await self._require_leader(context)
        key = (request.cluster, request.broker_set)
        now = time.monotonic()
        ids = frozenset(request.broker_ids)
        targets = ids or frozenset(self.raft.read(lambda s: list(s.sets[key].replicas) if key in s.sets else []))
        alive = sorted(b for b in targets if self._alive(key, b, now))
        if alive:
            return pb.CtlCleanBrokerDataReply(result=pb.CtlResult(
                ok=False, code=Refusal.BROKER_ALIVE, reason=f"broker(s) {alive} are alive; stop them first"))
        r = await self._commit_rpc(st.CleanBrokerData(request.cluster, request.broker_set, ids), context)
        if r.ok:
            for b in targets:
                self.live.forget((key, b))
            log.info("cleaned %s", kv(set=f"{key[0]}/{key[1]}", brokers=sorted(ids) or "all"))
        return pb.CtlCleanBrokerDataReply(result=_result(r))

    async def RemoveReplica(self, request, context):
        """Decommission one stopped replica (the rules are the state machine's, RemoveReplica)."""
        await self._require_leader(context)
        key = (request.cluster, request.broker_set)
        master = self.raft.read(lambda s: s.sets[key].master_id if key in s.sets else None)
        if master != request.broker_id and self._alive(key, request.broker_id, time.monotonic()):
            return pb.CtlRemoveReplicaReply(result=pb.CtlResult(
                ok=False, code=Refusal.BROKER_ALIVE, reason=f"broker {request.broker_id} is alive (it heartbeats); "
                "stop it first, then remove it"), view=self.view(*key))
        r = await self._commit_rpc(st.RemoveReplica(request.cluster, request.broker_set, request.broker_id,
                                                    self.cfg.min_in_sync_replicas), context)
        if r.ok:
            self.live.forget((key, request.broker_id))
            log.info("replica removed %s", kv(set=f"{key[0]}/{key[1]}", broker_id=request.broker_id,
                                               sss=list(r.sss), sss_epoch=r.sss_epoch))
        return pb.CtlRemoveReplicaReply(result=_result(r), view=self.view(*key))

    async def GetSyncStateData(self, request, context):
        await self._require_leader(context)
        keys = [(k.cluster, k.broker_set) for k in request.sets] or \
            self.raft.read(lambda s: sorted(s.sets.keys()))
        return pb.CtlGetSyncStateDataReply(sets=[self.view(c, b) for c, b in keys])

    async def GetMetadata(self, request, context):
        status = self.raft.status()
        nodes = self.raft.read(lambda s: dict(s.nodes))
        reply = pb.CtlGetMetadataReply(
            leader_address=self.leader_address(), leader_raft_address=self.raft.leader_raft_address(),
            self_raft_address=self.cfg.raft_addr, term=int(status.get("raft_term", 0)),
            commit_index=int(status.get("commit_idx", 0)), last_applied=int(status.get("last_applied", 0)),
            liveness_ready=self.liveness_ready())
        reply.peers.append(pb.ControllerNode(raft_address=self.cfg.raft_addr, address=self.cfg.listen, connected=True))
        members = self.raft.members()
        for p in members:
            if p != self.cfg.raft_addr:
                reply.peers.append(pb.ControllerNode(raft_address=p, address=nodes.get(p, ""),
                                                     connected=self.raft.peer_connected(p)))
        reply.controllers.extend(membership.controller_list(members, nodes))
        reply.retired = self.raft.retired
        reply.joining = self.raft.joining
        for c, b in self.raft.read(lambda s: sorted(s.sets.keys())):
            reply.sets.append(pb.CtlSetKey(cluster=c, broker_set=b))
        return reply

    async def GetHistory(self, request, context):
        await self._require_leader(context)
        hist = self.raft.read(lambda s: s.history_of(request.cluster, request.broker_set, request.limit))
        return pb.CtlGetHistoryReply(changes=[pb.CtlMasterChange(
            cluster=h.cluster, broker_set=h.broker_set, master_epoch=h.master_epoch, master_id=h.master_id,
            old_master_id=h.old_master_id, reason=h.reason, time_ms=h.time_ms,
            old_master_last_heartbeat_ms=h.old_master_last_heartbeat_ms, sync_state_set=list(h.sss)) for h in hist])

    # ---- membership (admin add-node / remove-node) -----------------------------------------------------

    def _members_reply(self, result: pb.CtlResult) -> pb.CtlMembershipReply:
        nodes = self.raft.read(lambda s: dict(s.nodes))
        return pb.CtlMembershipReply(result=result, members=[
            pb.ControllerNode(raft_address=m, address=self.cfg.listen if m == self.cfg.raft_addr else nodes.get(m, ""),
                              connected=m == self.cfg.raft_addr or self.raft.peer_connected(m))
            for m in self.raft.members()])

    async def _raft_call(self, start: Callable[[Callable[[Any, int], None]], None]) -> int:
        """Run a pysyncobj call with a callback; its fail code (0: done) or -1 on timeout."""
        fut: asyncio.Future = self.loop.create_future()

        def done(_result: Any, err: int) -> None:
            self.loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(int(err)))

        start(done)
        try:
            return await asyncio.wait_for(fut, self.cfg.commit_timeout_s)
        except TimeoutError:
            return -1

    def _refused(self, code: Refusal, reason: str) -> pb.CtlMembershipReply:
        log.warning("membership change refused %s", kv(code=code, reason=reason))
        return self._members_reply(pb.CtlResult(ok=False, code=code, reason=reason))

    async def AddNode(self, request, context):
        await self._require_leader(context)
        async with self._membership_lock:
            members = self.raft.members()
            nodes = self.raft.read(lambda s: dict(s.nodes))
            why = membership.check_add(request.raft_address, request.address, members, nodes)
            if why is None and self.cfg.random_raft_secret():
                why = (Refusal.MEMBERSHIP_CHANGE_FAILED,
                       f"controller {self.cfg.name} runs alone with a random Raft secret of its own, which no "
                       "other node can have: restart it with raft_secret_file (the same file on every node) "
                       "before adding nodes")
            if why is not None:
                return self._refused(*why)
            err = await self._raft_call(lambda cb: self.raft.add_node(request.raft_address, cb))
            if err != 0:
                return self._refused(Refusal.MEMBERSHIP_CHANGE_FAILED,
                                     f"Raft did not add {request.raft_address}: "
                                     f"{'not committed in time' if err < 0 else fail_name(err)} "
                                     "(one change at a time; is another in progress?)")
            r = await self._commit_rpc(st.AnnounceNode(request.raft_address, request.address), context)
            log.info("controller node added %s", kv(raft=request.raft_address, address=request.address,
                                                     members=self.raft.members()))
            return self._members_reply(_result(r))

    async def RemoveNode(self, request, context):
        await self._require_leader(context)
        async with self._membership_lock:
            members = self.raft.members()
            nodes = self.raft.read(lambda s: dict(s.nodes))
            raft = membership.resolve_member(request.address, members, nodes)
            why = membership.check_remove(raft, request.address, members)
            if why is not None:
                return self._refused(*why)
            assert raft is not None
            if raft == self.cfg.raft_addr:
                # a leader cannot remove itself: hand leadership over, the client retries on the new leader
                err = await self._raft_call(self.raft.transfer_leadership)
                if err != 0:
                    return self._refused(Refusal.MEMBERSHIP_CHANGE_FAILED,
                                         f"the leader {self.cfg.name} must hand leadership over before it is removed "
                                         f"and could not ({'no answer' if err < 0 else fail_name(err)}: no "
                                         "caught-up follower?); try again")
                end = time.monotonic() + 3 * self.cfg.raft_max_timeout_s
                while self.raft.is_leader() and time.monotonic() < end:
                    await asyncio.sleep(0.05)
                await abort(context, ErrorCode.NOT_LEADER, f"controller {self.cfg.name} hands leadership over "
                            "before it is removed; ask the new leader", status=grpc.StatusCode.FAILED_PRECONDITION)
            r = await self._commit_rpc(st.RetireNode(raft), context)
            if not r.ok:
                return self._members_reply(_result(r))
            await self._let_member_see_commit(raft)
            err = await self._raft_call(lambda cb: self.raft.remove_node(raft, cb))
            if err != 0:
                return self._refused(Refusal.MEMBERSHIP_CHANGE_FAILED,
                                     f"Raft did not remove {raft}: {'not committed in time' if err < 0 else fail_name(err)}")
            log.info("controller node removed %s", kv(raft=raft, members=self.raft.members()))
            return self._members_reply(pb.CtlResult(ok=True))

    async def _let_member_see_commit(self, raft: str, wait_s: float = 2.0) -> None:
        """Give a connected member that is about to be removed the chance to apply its own
        RetireNode (so it stops taking part in Raft); a member that is down is not waited for."""
        if not self.raft.peer_connected(raft):
            return
        target = int(self.raft.status().get("commit_idx", 0) or 0)
        end = time.monotonic() + wait_s
        while time.monotonic() < end and self.raft.match_index(raft) < target:
            await asyncio.sleep(0.05)
        # the commit index reaches it with the next append entries
        await asyncio.sleep(3 * self.cfg.raft_append_period_s)


# ---- running it ---------------------------------------------------------------------------------------

@dataclass
class ControllerHandle:
    """A running controller node; `await handle.stop()` stops it."""

    config: ControllerConfig
    service: ControllerService
    server: grpc.aio.Server | None      # None when embedded in another process's server
    observability: Observability | None = None

    async def stop(self) -> None:
        if self.observability is not None:
            await self.observability.stop()
        if self.server is not None:
            await self.server.stop(grace=1.0)
        await self.service.stop()


async def start_controller(config: ControllerConfig, server: grpc.aio.Server | None = None) -> ControllerHandle:
    """Start a controller node. With `server` (e.g. a name server's), the Controller service is
    added to it and `config.listen` must be that server's address; otherwise a gRPC server is
    started on `config.listen`."""
    config.validate()
    own = server is None
    tls = tlsmod.from_config(config)
    if own:
        log.info(tlsmod.mode_line(tls, "controller gRPC", config.listen))
    service = ControllerService(config)
    obs = Observability("controller", metrics_listen=config.metrics_listen)
    if own:
        # brokers' calls about themselves and admin writes must carry the cluster secret's signature
        # (embedded in a name server, that server's interceptor does it with the same secret)
        auth = NodeAuthInterceptor(config.cluster_secret(), protected_methods(), log)
        limiter = InflightLimiter(config.max_inflight_per_connection, config.max_inflight_requests)
        server = grpc.aio.server(interceptors=[MalformedRequestGuard(), obs.observer, limiter, auth])
    pbg.add_ControllerServicer_to_server(service, server)
    obs.attach(server, ["orbitmq.v1.Controller"], lambda: controller_rows(service))
    if own:
        if add_port(server, config.listen, tls) == 0:
            await service.stop()
            raise OSError(f"cannot listen on {config.listen}")
        await server.start()
    service.start()
    await obs.started()
    log.info("controller started %s", kv(node=config.name, listen=config.listen, raft=config.raft_addr,
                                         peers=",".join(config.peers), data_dir=config.data_dir))
    return ControllerHandle(config, service, server if own else None, obs)


def namesrv_hook(config: ControllerConfig) -> Callable[[grpc.aio.Server], Awaitable[Callable[[], Awaitable[None]]]]:
    """A name server service hook (namesrv.server.serve(..., hooks=[...])) that embeds a controller
    in the name server's gRPC server (RocketMQ's enableControllerInNamesrv)."""

    async def hook(server: grpc.aio.Server) -> Callable[[], Awaitable[None]]:
        handle = await start_controller(config, server)
        return handle.stop

    return hook
