"""Checks a broker's claim to be master against the controllers, so a name server never routes
producers to a master nobody elected (a forged or stale RegisterBroker with a huge epoch).

Owns: the last (master id, epoch) the controller confirmed per broker set, and asking the
controller leader when a claim differs from it. When no controller answers, the claim is
accepted (the registration is signed by a broker holding the cluster secret) and a warning is
logged: a name server cut off from the controllers must not drop every master from the routes.
Also follows the controllers' membership: every answer carries their current member list, and
`refresh()` (the name server calls it every `controller_refresh_s`) asks for it, so a name server
keeps reaching the controllers after `admin controller add-node/remove-node` without a restart.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from orbitmq.common.logs import kv

log = logging.getLogger("orbitmq.namesrv.voucher")

WARN_EVERY_S = 10.0


class MasterVoucher:
    """`await check(cluster, broker_set, broker_id, epoch)` -> None if vouched, else why not."""

    def __init__(self, controllers: list[str], rpc_timeout_s: float = 1.0, tls: Any = None) -> None:
        """`tls`: the name server's common.tls.TlsConfig the controllers are dialed with (None: plaintext)."""
        from orbitmq.controller.client import ControllerClient

        self.client = ControllerClient(controllers, rpc_timeout_s=rpc_timeout_s, retry_deadline_s=rpc_timeout_s,
                                       tls=tls or False)
        self.confirmed: dict[tuple[str, str], tuple[int, int]] = {}   # (cluster, set) -> (master id, epoch)
        self._warned = 0.0

    async def check(self, cluster: str, broker_set: str, broker_id: int, epoch: int) -> str | None:
        key = (cluster, broker_set)
        if self.confirmed.get(key) == (broker_id, epoch):
            return None
        try:
            views = await self.client.get_sync_state_data([key])
        except Exception as e:  # noqa: BLE001 - unreachable controllers: trust the signed broker
            now = time.monotonic()
            if now - self._warned > WARN_EVERY_S:
                self._warned = now
                log.warning("cannot ask the controllers about a master claim; accepting it %s",
                            kv(set=broker_set, broker_id=broker_id, epoch=epoch, error=e))
            return None
        for v in views:
            self.client.learn(v.controllers)
        view = next((v for v in views if v.broker_set == broker_set), None)
        if view is None or not view.exists:
            return f"the controllers know no broker set {cluster}/{broker_set}"
        self.confirmed[key] = (int(view.master_id), int(view.master_epoch))
        if (view.master_id, view.master_epoch) != (broker_id, epoch):
            return (f"the controllers say broker set {broker_set}'s master is broker {view.master_id} at "
                    f"epoch {view.master_epoch}, not broker {broker_id} at epoch {epoch}")
        return None

    async def refresh(self) -> bool:
        """Ask the controller leader for its member list and adopt it (True if it changed). Only
        the leader's word counts: a removed node that missed its own removal still lists the old
        members."""
        tried: set[str] = set()
        queue = [self.client.leader, *self.client.addresses]
        while queue:
            addr = queue.pop(0)
            if addr in tried:
                continue
            tried.add(addr)
            try:
                md = await self.client.get_metadata(addr)
            except Exception as e:  # noqa: BLE001 - try the next one; next time again
                log.debug("controller list refresh failed %s", kv(controller=addr, error=e))
                continue
            if md.leader_raft_address and md.leader_raft_address == md.self_raft_address:
                self.client.leader = addr if addr in self.client.addresses else self.client.leader
                return self.client.learn(md.controllers)
            if md.leader_address:
                queue.insert(0, md.leader_address)
        return False

    async def close(self) -> None:
        await self.client.close()
