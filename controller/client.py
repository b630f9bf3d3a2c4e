"""Client of the controller cluster: finds the Raft leader among a list of controller addresses
and follows it transparently (NOT_LEADER + `orbitmq-leader` metadata, or the next address when a
node is down), with bounded tenacity retries.

Owns: channels to the controllers, the current leader guess, error mapping, and the address
list itself: `learn(addresses)` replaces it with the controllers' own member list (carried in
their answers), so brokers and name servers follow `admin controller add-node/remove-node`
without a restart. Never retries a command whose commit timed out (it may still commit): that
surfaces as `CommitTimeout`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from orbitmq.common import dial_map
from orbitmq.common import tls as tlsmod
from orbitmq.common.error_codes import ErrorCode
from orbitmq.common.grpc_errors import ERROR_KEY, LEADER_KEY, metadata_of
from orbitmq.common.node_auth_grpc import signing_interceptors
from orbitmq.common.request_auth_grpc import aio_signing_interceptors
from orbitmq.common.tls import TlsConfig
from orbitmq.common.tls_grpc import aio_channel, handshake_hint
from orbitmq.protos import controller_pb2 as pb
from orbitmq.protos import controller_pb2_grpc as pbg

log = logging.getLogger("orbitmq.controller.client")

BAD_FOR_S = 3.0   # an address that was down or stalled is not followed as "the leader" for this long


class ControllerError(Exception):
    """A controller call failed; `code` is the stable `orbitmq-error` name (or the gRPC code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NotLeader(ControllerError):
    """The node asked is not the leader (retried on another node by the client)."""

    def __init__(self, message: str, leader: str) -> None:
        super().__init__("NOT_LEADER", message)
        self.leader = leader


class NoLeader(ControllerError):
    """No controller answered as leader before the retry deadline (no quorum, all down)."""


class CommitTimeout(ControllerError):
    """The command was not committed by a majority in time; it may still commit later."""


class Rejected(ControllerError):
    """The controller's rules refused the command (nothing changed)."""


def map_error(e: grpc.RpcError, addr: str) -> ControllerError:
    """A gRPC error from controller `addr` as a ControllerError subclass."""
    md = metadata_of(e)
    code = md.get(ERROR_KEY, "")
    status = e.code() if hasattr(e, "code") else None
    details = (e.details() if hasattr(e, "details") else "") or str(status)
    if code == ErrorCode.NOT_LEADER:
        return NotLeader(f"{addr}: {details}", md.get(LEADER_KEY, ""))
    if code == ErrorCode.REPLICATION_TIMEOUT:
        return CommitTimeout(code, f"{addr}: {details}")
    if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) or \
            (status == grpc.StatusCode.DEADLINE_EXCEEDED and not code):
        return NoLeader("UNAVAILABLE", f"{addr}: {details}")
    return ControllerError(code or (status.name if status else "UNKNOWN"), f"{addr}: {details}")


class _Retry(Exception):
    pass


class ControllerClient:
    """Calls the controller leader. `addresses`: every controller's gRPC address (host:port)."""

    def __init__(self, addresses: Sequence[str], rpc_timeout_s: float = 5.0, retry_deadline_s: float = 10.0,
                 secret: bytes | None = None, tls: TlsConfig | str | bool | None = None,
                 credentials: Any = None) -> None:
        """`secret`: the cluster secret; every call is signed with it (brokers and admin writes).
        `tls`: how the controllers are dialed (common/tls.py `resolve`: None is the process default,
        $ORBITMQ_TLS_*; False plaintext). `credentials`: (access key, secret) of a user; every call is
        signed as that user (admin CLI)."""
        addrs = [a.strip() for a in addresses if a.strip()]
        if not addrs:
            raise ValueError("no controller addresses")
        self.addresses = addrs
        self.rpc_timeout_s = rpc_timeout_s
        self.retry_deadline_s = retry_deadline_s
        self.leader = addrs[0]
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, pbg.ControllerStub] = {}
        self._next = 0
        self._bad: dict[str, float] = {}   # address -> until when it is not trusted as leader
        self._interceptors = signing_interceptors(secret) + aio_signing_interceptors(credentials)
        self.tls = tlsmod.resolve(tls)

    def learn(self, addresses: Sequence[str]) -> bool:
        """Replace the address list with the controllers' current members (an empty list means
        "not known": ignored). Channels to addresses that left are closed. True if it changed."""
        addrs = sorted({a.strip() for a in addresses if a.strip()})
        if not addrs or addrs == sorted(self.addresses):
            return False
        gone = [a for a in self.addresses if a not in addrs]
        log.info("controller list changed %s", {"old": self.addresses, "new": addrs})
        self.addresses = addrs
        if self.leader not in addrs:
            self.leader = addrs[0]
        self._next = 0
        for a in gone:
            self._stubs.pop(a, None)
            self._bad.pop(a, None)
            ch = self._channels.pop(a, None)
            if ch is not None:
                try:
                    asyncio.get_running_loop().create_task(ch.close())
                except RuntimeError:   # no loop running: the channel is dropped with the client
                    pass
        return True

    def stub(self, addr: str) -> pbg.ControllerStub:
        if addr not in self._stubs:
            ch = aio_channel(dial_map.resolve(addr), self.tls, interceptors=self._interceptors)
            self._channels[addr] = ch
            self._stubs[addr] = pbg.ControllerStub(ch)
        return self._stubs[addr]

    def _error(self, e: grpc.RpcError, addr: str) -> ControllerError:
        """map_error, plus a hint when the failure looks like a TLS mismatch (plaintext to a TLS port,
        no client certificate for a mutual-TLS port, an unknown CA)."""
        err = map_error(e, addr)
        if isinstance(err, NoLeader):
            hint = handshake_hint(err.message, self.tls.dials_tls, bool(self.tls.cert_file))
            if hint:
                err.message += hint
                err.args = (f"{err.code}: {err.message}",)
        return err

    async def close(self) -> None:
        chans, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for ch in chans:
            await ch.close()

    def _rotate(self, failed: str, hint: str = "", failed_hard: bool = False) -> None:
        """Move on from `failed`: to the leader it named (`hint`), unless that one itself failed
        hard (down, stalled) in the last `BAD_FOR_S` - a follower may still name a dead leader
        until its own election timeout - else to the next address."""
        now = time.monotonic()
        if failed_hard:
            self._bad[failed] = now + BAD_FOR_S
        if hint and hint != failed and self._bad.get(hint, 0) <= now:
            self.leader = hint
            return
        i = self.addresses.index(failed) if failed in self.addresses else self._next
        n = len(self.addresses)
        good = [(i + s) % n for s in range(1, n + 1) if self._bad.get(self.addresses[(i + s) % n], 0) <= now]
        self._next = good[0] if good else (i + 1) % n   # all distrusted: plain round robin
        self.leader = self.addresses[self._next]

    async def call(self, method: str, request: Any, timeout: float | None = None,
                   deadline_s: float | None = None) -> Any:
        """Call `method` on the leader, following redirects for up to `deadline_s` seconds."""
        last: list[ControllerError] = []

        async def once() -> Any:
            addr = self.leader
            try:
                return await getattr(self.stub(addr), method)(request, timeout=timeout or self.rpc_timeout_s)
            except grpc.RpcError as e:
                err = self._error(e, addr)
                last[:] = [err]
                if isinstance(err, NotLeader):
                    self._rotate(addr, err.leader)
                    raise _Retry() from err
                if isinstance(err, NoLeader):
                    self._rotate(addr, failed_hard=True)
                    raise _Retry() from err
                if err.code == ErrorCode.TOO_MANY_REQUESTS:
                    raise _Retry() from err   # the leader is busy: the same node again, after the backoff
                raise err from None

        try:
            async for attempt in AsyncRetrying(
                    retry=retry_if_exception_type(_Retry),
                    stop=stop_after_delay(self.retry_deadline_s if deadline_s is None else deadline_s),
                    wait=wait_exponential(multiplier=0.02, max=0.3), reraise=True):
                with attempt:
                    return await once()
        except _Retry:
            err = last[0] if last else None
            raise NoLeader("NO_LEADER", f"no controller leader answered {method} "
                           f"({err.message if err else 'no answer'})") from None
        raise AssertionError("unreachable")

    # ---- typed helpers ------------------------------------------------------------------------------

    async def get_next_broker_id(self, cluster: str, broker_set: str) -> int:
        r = await self.call("GetNextBrokerId", pb.CtlGetNextBrokerIdRequest(cluster=cluster, broker_set=broker_set))
        return r.next_broker_id

    async def apply_broker_id(self, cluster: str, broker_set: str, broker_id: int, check_code: str) -> pb.CtlResult:
        r = await self.call("ApplyBrokerId", pb.CtlApplyBrokerIdRequest(
            cluster=cluster, broker_set=broker_set, broker_id=broker_id, check_code=check_code))
        return r.result

    async def register_broker(self, cluster: str, broker_set: str, broker_id: int, address: str, ha_address: str,
                              learner: bool, check_code: str) -> pb.CtlRegisterBrokerReply:
        return await self.call("RegisterBroker", pb.CtlRegisterBrokerRequest(
            cluster=cluster, broker_set=broker_set, broker_id=broker_id, address=address, ha_address=ha_address,
            learner=learner, check_code=check_code))

    async def heartbeat(self, req: pb.CtlHeartbeatRequest, timeout: float | None = None) -> pb.CtlSetView:
        r = await self.call("Heartbeat", req, timeout=timeout, deadline_s=timeout)
        return r.view

    async def get_replica_info(self, cluster: str, broker_set: str) -> pb.CtlSetView:
        return await self.call("GetReplicaInfo", pb.CtlGetReplicaInfoRequest(cluster=cluster, broker_set=broker_set))

    async def alter_sync_state_set(self, cluster: str, broker_set: str, master_id: int, master_epoch: int,
                                   members: Sequence[int], sss_epoch: int) -> pb.CtlAlterSyncStateSetReply:
        return await self.call("AlterSyncStateSet", pb.CtlAlterSyncStateSetRequest(
            cluster=cluster, broker_set=broker_set, master_id=master_id, master_epoch=master_epoch,
            new_sync_state_set=list(members), sss_epoch=sss_epoch))

    async def elect_master(self, cluster: str, broker_set: str, broker_id: int = 0,
                           designate: bool = False, handoff: bool = False) -> pb.CtlElectMasterReply:
        return await self.call("ElectMaster", pb.CtlElectMasterRequest(
            cluster=cluster, broker_set=broker_set, broker_id=broker_id, designate=designate, handoff=handoff))

    async def clean_broker_data(self, cluster: str, broker_set: str, broker_ids: Sequence[int] = ()) -> pb.CtlResult:
        r = await self.call("CleanBrokerData", pb.CtlCleanBrokerDataRequest(
            cluster=cluster, broker_set=broker_set, broker_ids=list(broker_ids)))
        return r.result

    async def remove_replica(self, cluster: str, broker_set: str, broker_id: int) -> pb.CtlRemoveReplicaReply:
        return await self.call("RemoveReplica", pb.CtlRemoveReplicaRequest(
            cluster=cluster, broker_set=broker_set, broker_id=broker_id))

    async def get_sync_state_data(self, sets: Sequence[tuple[str, str]] = ()) -> list[pb.CtlSetView]:
        r = await self.call("GetSyncStateData", pb.CtlGetSyncStateDataRequest(
            sets=[pb.CtlSetKey(cluster=c, broker_set=s) for c, s in sets]))
        return list(r.sets)

    async def get_metadata(self, addr: str | None = None) -> pb.CtlGetMetadataReply:
        """The leader's metadata, or (with `addr`) what that one node says, leader or not."""
        if addr is None:
            return await self.call("GetMetadata", pb.CtlGetMetadataRequest())
        try:
            return await self.stub(addr).GetMetadata(pb.CtlGetMetadataRequest(), timeout=self.rpc_timeout_s)
        except grpc.RpcError as e:
            raise self._error(e, addr) from None

    async def get_history(self, cluster: str = "", broker_set: str = "", limit: int = 0) -> list[pb.CtlMasterChange]:
        r = await self.call("GetHistory", pb.CtlGetHistoryRequest(cluster=cluster, broker_set=broker_set, limit=limit))
        return list(r.changes)

    async def add_node(self, raft_address: str, address: str) -> pb.CtlMembershipReply:
        return await self.call("AddNode", pb.CtlAddNodeRequest(raft_address=raft_address, address=address))

    async def remove_node(self, address: str) -> pb.CtlMembershipReply:
        return await self.call("RemoveNode", pb.CtlRemoveNodeRequest(address=address))

    async def wait_leader(self, timeout: float) -> pb.CtlGetMetadataReply:
        """Wait until some controller answers as leader with rebuilt liveness."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                md = await self.call("GetMetadata", pb.CtlGetMetadataRequest(), deadline_s=max(0.1, end - loop.time()))
                if md.liveness_ready:
                    return md
                if md.leader_address and md.leader_address != self.leader:
                    self.leader = md.leader_address
            except NoLeader:
                pass
            if loop.time() >= end:
                raise NoLeader("NO_LEADER", f"no controller leader within {timeout} s")
            await asyncio.sleep(0.1)

    # ---- users and ACL policies (controller/auth_service.py) -----------------------------------------

    async def auth_upsert_user(self, access_key: str, secret: str, admin: bool = False) -> pb.CtlResult:
        r = await self.call("AuthUpsertUser", pb.CtlAuthUpsertUserRequest(
            user=pb.CtlUser(access_key=access_key, secret=secret, admin=admin)))
        return r.result

    async def auth_delete_user(self, access_key: str) -> pb.CtlResult:
        return (await self.call("AuthDeleteUser", pb.CtlAuthDeleteUserRequest(access_key=access_key))).result

    async def auth_set_acl(self, access_key: str, resource: str, actions: Sequence[str],
                           decision: str) -> pb.CtlResult:
        r = await self.call("AuthSetAcl", pb.CtlAuthSetAclRequest(entry=pb.CtlAclEntry(
            access_key=access_key, resource=resource, actions=list(actions), decision=decision)))
        return r.result

    async def auth_delete_acl(self, access_key: str, resource: str = "") -> pb.CtlResult:
        r = await self.call("AuthDeleteAcl", pb.CtlAuthDeleteAclRequest(access_key=access_key, resource=resource))
        return r.result

    async def auth_list(self) -> pb.CtlAuthListReply:
        return await self.call("AuthList", pb.CtlAuthListRequest())

    async def auth_snapshot(self, known_version: int = 0, timeout: float | None = None) -> pb.CtlAuthSnapshotReply:
        return await self.call("AuthSnapshot", pb.CtlAuthSnapshotRequest(known_version=known_version),
                               timeout=timeout, deadline_s=timeout)

    def session(self, requests: AsyncIterator[pb.CtlHeartbeatRequest]) -> tuple[str, Any]:
        """Open a BrokerSession stream to the current leader guess: (address, call)."""
        addr = self.leader
        return addr, self.stub(addr).BrokerSession(requests)


def check(result: pb.CtlResult) -> None:
    """Raise `Rejected` if a command's result says it was refused."""
    if not result.ok:
        raise Rejected(result.code or "REJECTED", result.reason)
