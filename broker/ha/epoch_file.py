"""The broker's epoch file: the epoch list (epochs.py) stored durably.

Owns: one broker's file `<store_dir>/epochs`. Every write replaces the file durably
(common/durable.py: temporary file, fsync, rename, fsync dir), so a crash leaves either the old or
the new list, never a mix. An empty list is a valid persisted state (unlike RocketMQ, where
writing an empty list did nothing). It never touches the commitlog. The entry type and the rules
are re-exported from epochs.py for existing importers.
"""

from __future__ import annotations

import threading
from pathlib import Path

from orbitmq.broker.ha.epochs import (  # noqa: F401 - re-exported
    MAGIC,
    VERSION,
    EpochEntry,
    EpochFileError,
    EpochOrderError,
    append_entry,
    decode,
    encode,
    truncate_entries,
    validate,
)
from orbitmq.common.durable import replace_file


class EpochFile:
    """The durable epoch list of one broker (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: list[EpochEntry] = []
        self.load()

    def load(self) -> list[EpochEntry]:
        with self._lock:
            tmp = self.path.with_name(self.path.name + ".tmp")
            if tmp.exists():
                tmp.unlink()  # an interrupted write: the rename never happened, the old file stands
            if self.path.exists():
                self._entries = decode(self.path.read_bytes(), str(self.path))
            else:
                self._entries = []
            return list(self._entries)

    @property
    def entries(self) -> list[EpochEntry]:
        with self._lock:
            return list(self._entries)

    def last(self) -> EpochEntry | None:
        with self._lock:
            return self._entries[-1] if self._entries else None

    def last_epoch(self) -> int:
        last = self.last()
        return last.epoch if last else 0

    def append(self, epoch: int, start_offset: int) -> None:
        """Durably add (epoch, start_offset); same epoch and offset again is a no-op."""
        with self._lock:
            new = append_entry(self._entries, epoch, start_offset)
            if new != self._entries:
                self._write(new)

    def truncate(self, offset: int) -> None:
        """Durably drop the entries that start at or after `offset` (see truncate_entries)."""
        with self._lock:
            new = truncate_entries(self._entries, offset)
            if new != self._entries:
                self._write(new)

    def replace(self, entries: list[EpochEntry]) -> None:
        with self._lock:
            self._write(list(entries))

    def _write(self, entries: list[EpochEntry]) -> None:
        replace_file(self.path, encode(entries))
        self._entries = entries
