"""Replication and failover of a broker set: the master streams its commitlog to followers and
learners, acknowledges sends once the sync-state-set holds them, and replicas change roles as the
controller says.

Pure rules (no I/O): `protocol` (frames), `connection` (follower and master connection state
machines), `roles` (role enum and transitions), `sync_state`, `ack_policy`, `epochs` and
`epoch_truncation`. Shells: `epoch_file`, `follower`, `master`, `role_manager` (the broker's
`ReplicationHooks` in controller mode) and `replication_hooks` (the interface the broker server
calls; the standalone default). Public names are loaded on first use, so importing a pure
module never pulls in a shell.
"""

from __future__ import annotations

from orbitmq.common.lazy_exports import lazy_exports

_EXPORTS = {
    "ReplicationHooks": "replication_hooks", "RoleManager": "role_manager", "make_hooks": "role_manager",
    "Role": "roles",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
