"""A broker's or proxy's copy of the users and ACL policies, fetched from the controllers.

Owns: fetching `AuthSnapshot` (signed with the cluster secret) every `refresh_s`, asking only for
changes (`known_version`), and an early refresh when a request names an access key not known yet
(at most one every `MIN_FORCED_GAP_S`), so a user just created can send at once. The last snapshot
stays in use while the controllers cannot be reached; before the first one, nobody is known (every
user request is refused). Never decides anything: `common/acl.py` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from orbitmq.common import acl
from orbitmq.controller.client import ControllerClient
from orbitmq.protos import controller_pb2 as pb

log = logging.getLogger("orbitmq.auth")

MIN_FORCED_GAP_S = 0.5


def tls_of(cfg: object) -> object | None:
    """How this process dials the controllers: its own TLS settings (common/tls.py, once TLS is in
    the tree; None before, which leaves ControllerClient's default)."""
    try:
        from orbitmq.common.tls import from_config
    except ImportError:
        return None
    return from_config(cfg)


def snapshot_of(reply: pb.CtlAuthSnapshotReply) -> acl.Snapshot:
    users = {u.access_key: acl.User(u.access_key, u.secret, u.admin) for u in reply.users}
    policies: dict[str, list[acl.Entry]] = {}
    for e in reply.entries:
        try:
            entry = acl.Entry(acl.Resource.parse(e.resource), acl.parse_actions(e.actions), acl.Decision(e.decision))
        except (acl.AclError, ValueError) as err:   # the controller validated it; never trust blindly
            log.warning("skipped ACL entry of %s: %s", e.access_key, err)
            continue
        policies.setdefault(e.access_key, []).append(entry)
    return acl.Snapshot(users, {k: tuple(v) for k, v in policies.items()}, reply.version)


class AuthCache:
    """`snapshot` is always usable; `await start()`, `await stop()`, `await refresh_unknown(ak)`."""

    def __init__(self, controllers: Sequence[str], cluster_secret: bytes | None, refresh_s: float = 2.0,
                 tls: object | None = None) -> None:
        kw = {"tls": tls} if tls is not None else {}
        self.client = ControllerClient(controllers, rpc_timeout_s=2.0, retry_deadline_s=2.0, secret=cluster_secret,
                                       **kw)
        self.refresh_s = refresh_s
        self.snapshot = acl.Snapshot()
        self.fetched = False
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._last_forced = 0.0

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    async def refresh(self) -> bool:
        """Fetch what changed; False if the controllers could not be asked."""
        async with self._lock:
            try:
                reply = await self.client.auth_snapshot(self.snapshot.version if self.fetched else 0, timeout=2.0)
            except Exception as e:  # noqa: BLE001 - keep the last snapshot whatever failed
                log.warning("users and ACLs not refreshed (keeping version %d): %s", self.snapshot.version, e)
                return False
            if not reply.unchanged:
                self.snapshot = snapshot_of(reply)
                log.info("users and ACLs at version %d (%d users)", reply.version, len(reply.users))
            self.fetched = True
            return True

    async def refresh_unknown(self, access_key: str) -> bool:
        """A request named `access_key`, unknown here: refresh now (rate limited); True if it is
        known afterwards."""
        now = time.monotonic()
        if now - self._last_forced >= MIN_FORCED_GAP_S:
            self._last_forced = now
            await self.refresh()
        return access_key in self.snapshot.users
