"""The seam between the broker's gRPC service and replication (HA): what the service consults.

Owns: the `ReplicationHooks` interface and its standalone default (always writable, nothing to
wait for, role STANDALONE). The HA engineer subclasses it (broker/ha_*.py, broker/ha/role_manager.py)
and swaps it in with `BrokerServer(config, hooks=...)` or `BrokerServer.set_hooks(...)`. The
service calls, on every send: validate -> `check_writable()` -> store put -> (sync flush) ->
`await wait_replicated(end_offset)` -> reply. Hooks must never block the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from orbitmq.common.error_codes import ErrorCode

if TYPE_CHECKING:
    from orbitmq.broker.server import BrokerServer


class ReplicationError(Exception):
    """A typed refusal sent to the client as `orbitmq-error` = `code` (an ErrorCode name).

    Codes used here: NOT_MASTER, FENCED, NO_PERMISSION, REPLICATION_TIMEOUT,
    IN_SYNC_REPLICAS_NOT_ENOUGH. `master_address`, when known, is sent as `orbitmq-master`
    trailing metadata so the client can retry there without a route refresh.
    """

    def __init__(self, code: str, details: str, master_address: str = "") -> None:
        try:
            code = ErrorCode(code).value
        except ValueError:
            raise ValueError(f"unknown ErrorCode name {code!r}") from None
        super().__init__(details)
        self.code = code
        self.details = details
        self.master_address = master_address


class ReplicationHooks:
    """Standalone default: a lone broker that is its own master and never waits for replicas."""

    server: BrokerServer | None = None
    # set while sends must wait before they are admitted (a master handing off holds them briefly);
    # the service awaits it before `check_writable()`
    send_gate: Callable[[], Awaitable[None]] | None = None

    # ---- lifecycle (called by BrokerServer) -----------------------------------------------------

    async def start(self, server: BrokerServer) -> None:
        """Called after the store is open and before the gRPC server starts serving: the hooks may
        add servicers to `server.grpc_server` and keep `server.registrar` to call `register_now()`."""
        self.server = server

    async def stop(self) -> None:
        """Called after the gRPC server stopped, before the store closes."""

    async def before_stop(self) -> None:
        """Called first on SIGTERM, while still serving and registered (an HA master hands off)."""

    async def hand_off(self, successor: int = 0, timeout_s: float = 5.0) -> dict[str, Any]:
        """Hand mastership to `successor` (0: a caught-up one) without failing a send; the outcome
        as {ok, code, reason, master_id, master_address, epoch}. Standalone: nothing to hand to."""
        return {"ok": False, "code": "UNSUPPORTED", "reason": "a standalone broker has no replicas to hand off to"}

    # ---- the send path ----------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise ReplicationError(NOT_MASTER | FENCED | NO_PERMISSION) if writes must be refused."""

    async def wait_replicated(self, end_offset: int) -> None:
        """Return once the commitlog up to `end_offset` is held by enough replicas (or raise
        ReplicationError(REPLICATION_TIMEOUT | IN_SYNC_REPLICAS_NOT_ENOUGH)); standalone: at once."""

    # ---- role info (GetBrokerStatus, name server registration) ------------------------------------

    def role(self) -> str:
        """MASTER, FOLLOWER, LEARNER or STANDALONE."""
        return "STANDALONE"

    def is_master(self) -> bool:
        return self.role() in ("MASTER", "STANDALONE")

    def epoch(self) -> int:
        """The master epoch this replica serves under (registration fencing uses it)."""
        return 0

    def ha_address(self) -> str:
        """Address followers replicate from ('' = the config's ha_address)."""
        return ""

    def master_address(self) -> str:
        """The gRPC address of the set's master as this replica knows it ('' if unknown)."""
        if self.server is not None and self.is_master():
            return self.server.config.listen
        return ""

    def on_register_response(self, namesrv: str, master_id: int, master_address: str,
                             master_ha_address: str) -> None:
        """A name server answered a registration with the set's master as it sees it."""


StandaloneHooks = ReplicationHooks
