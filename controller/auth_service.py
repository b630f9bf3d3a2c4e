"""The controller's user and ACL RPCs (a mixin of `ControllerService`) and the admin bootstrap.

Owns: who may call them, and committing `auth_state` commands through Raft. Writes and lists need
a request signed by an admin user (MQv2-HMAC-SHA1, verified against the replicated users) or by
the cluster secret (a node, or the admin CLI given `--cluster-secret-file`); `AuthSnapshot`, which
carries the secrets for brokers and proxies, needs the cluster secret. A controller without a
cluster secret serves them to anyone (it says so in its log). The leader creates the user of
`auth_admin_file` / $ORBITMQ_AUTH_ADMIN as an admin if that access key does not exist yet.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc

from orbitmq.common import credentials, node_auth, request_auth
from orbitmq.common.error_codes import ErrorCode
from orbitmq.common.grpc_errors import abort
from orbitmq.common.logs import kv
from orbitmq.common.node_auth_grpc import payload_of
from orbitmq.common.request_auth_server import local_offset_s
from orbitmq.controller import auth_state as au
from orbitmq.protos import controller_pb2 as pb

log = logging.getLogger("orbitmq.controller.auth")

ADMIN_ENV = "ORBITMQ_AUTH_ADMIN"
SERVICE = pb.DESCRIPTOR.services_by_name["Controller"].full_name


def _entries(state: au.AuthState, access_key: str = "") -> list[pb.CtlAclEntry]:
    return [pb.CtlAclEntry(access_key=ak, resource=r, actions=list(acts), decision=d)
            for ak, pol in sorted(state.acls.items()) if not access_key or ak == access_key
            for r, (acts, d) in sorted(pol.items())]


class AuthRpcs:
    """Mixed into ControllerService (which provides cfg, raft, commit, _require_leader)."""

    cfg: Any
    raft: Any

    async def _auth_caller(self, request: Any, context: grpc.aio.ServicerContext, method: str,
                           node_only: bool = False) -> str:
        """Who is calling: "node" (cluster secret), an admin user's access key, or "open" (no
        cluster secret configured). Aborts UNAUTHENTICATED / FORBIDDEN otherwise."""
        secret = self.cfg.cluster_secret()
        if secret is None:
            return "open"
        md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        full = f"/{SERVICE}/{method}"
        header = md.get(node_auth.HEADER)
        if header or node_only:
            try:
                node_auth.verify(secret, full, payload_of(request), header, int(time.time() * 1000))
                return "node"
            except node_auth.NodeAuthError as e:
                await abort(context, ErrorCode.UNAUTHENTICATED, str(e))
        now = time.time()
        snap = self.raft.read(lambda s: s.auth.snapshot())
        try:
            ak = request_auth.verify(md, snap.secret_of, now, self.cfg.auth_max_skew_s, local_offset_s(now))
        except request_auth.AuthFailure as e:
            await abort(context, ErrorCode.UNAUTHENTICATED, f"{method}: {e}")
        if not snap.users[ak].admin:
            await abort(context, ErrorCode.FORBIDDEN, f"{method}: user {ak} is not an admin user")
        return ak

    async def _auth_commit(self, cmd: au.AuthCommand, request: Any, context: Any, method: str) -> pb.CtlAuthReply:
        await self._require_leader(context)
        who = await self._auth_caller(request, context, method)
        r = await self._commit_rpc(cmd, context)
        log.info("auth change %s", kv(op=type(cmd).__name__, user=getattr(cmd, "access_key", ""),
                                      by=who, ok=r.ok, code=r.code or "-"))
        return pb.CtlAuthReply(result=pb.CtlResult(ok=r.ok, code=str(r.code), reason=r.reason))

    async def AuthUpsertUser(self, request, context):
        u = request.user
        return await self._auth_commit(au.UpsertUser(u.access_key, u.secret, u.admin), request, context,
                                       "AuthUpsertUser")

    async def AuthDeleteUser(self, request, context):
        return await self._auth_commit(au.DeleteUser(request.access_key), request, context, "AuthDeleteUser")

    async def AuthSetAcl(self, request, context):
        e = request.entry
        return await self._auth_commit(au.SetAclEntry(e.access_key, e.resource, tuple(e.actions), e.decision),
                                       request, context, "AuthSetAcl")

    async def AuthDeleteAcl(self, request, context):
        return await self._auth_commit(au.DeleteAcl(request.access_key, request.resource), request, context,
                                       "AuthDeleteAcl")

    async def AuthList(self, request, context):
        await self._require_leader(context)
        await self._auth_caller(request, context, "AuthList")

        def build(s: Any) -> pb.CtlAuthListReply:
            users = [pb.CtlUser(access_key=ak, admin=a) for ak, (_, a) in sorted(s.auth.users.items())]
            return pb.CtlAuthListReply(users=users, entries=_entries(s.auth), version=s.auth.version)

        return self.raft.read(build)

    async def AuthSnapshot(self, request, context):
        await self._require_leader(context)
        await self._auth_caller(request, context, "AuthSnapshot", node_only=True)

        def build(s: Any) -> pb.CtlAuthSnapshotReply:
            a = s.auth
            if request.known_version and request.known_version == a.version:
                return pb.CtlAuthSnapshotReply(unchanged=True, version=a.version)
            users = [pb.CtlUser(access_key=ak, secret=sk, admin=adm) for ak, (sk, adm) in sorted(a.users.items())]
            return pb.CtlAuthSnapshotReply(version=a.version, users=users, entries=_entries(a))

        return self.raft.read(build)

    async def bootstrap_admin(self) -> None:
        """On becoming the serving leader: create the configured admin user if absent."""
        try:
            creds = credentials.from_env_or_file(self.cfg.auth_admin_file, ADMIN_ENV)
        except ValueError as e:
            log.error("admin user not created: %s", e)
            return
        if creds is None:
            return
        try:
            r = await self.commit(au.UpsertUser(creds.access_key, creds.secret, True, only_if_absent=True))
        except Exception as e:  # noqa: BLE001 - retried at the next leadership
            log.warning("admin user not created: %s", e)
            return
        if not r.ok:
            log.error("admin user %s refused: %s", creds.access_key, r.reason)
        elif r.reason != "exists":
            log.info("created admin user %s", creds.access_key)
