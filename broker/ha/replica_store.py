"""What replication needs of a broker's store: the `ReplicaStore` Protocol (no implementation).

Owns: the typed seam between the HA shells (ha/master.py, ha/follower.py, ha/role_manager.py) and
`broker/store/message_store.py` `MessageStore`, which satisfies it structurally. Offsets are physical commitlog
offsets; `read_raw` returns whole records only; `append_raw` must start at `max_physical_offset`;
`truncate` is durable (the commitlog and every index); `start_log_at` empties the store (log,
indexes, metadata) and starts the log at an offset, durably.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ReplicaStore(Protocol):
    @property
    def max_physical_offset(self) -> int: ...

    @property
    def min_physical_offset(self) -> int: ...

    @property
    def confirm_offset(self) -> int: ...

    def set_confirm_offset(self, offset: int) -> None: ...

    def read_raw(self, start: int, max_bytes: int) -> bytes: ...

    def append_raw(self, start: int, data: bytes) -> int: ...

    def truncate(self, offset: int) -> None: ...

    def start_log_at(self, offset: int) -> None: ...

    async def flushed(self, end_offset: int) -> None: ...

    def append_meta_snapshot(self) -> Any: ...

    def set_retention_floor(self, floor: Any) -> None: ...
