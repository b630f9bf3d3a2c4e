"""The epoch list (pure): which master epoch wrote which range of the commitlog.

Owns: `EpochEntry` (an entry's range ends where the next one starts, the last one is
open-ended), the ordering rules (epochs strictly increase, start offsets never decrease), the
text encoding with its CRC, and the pure edits (append, truncate). An empty list is valid. No I/O:
epoch_file.py stores the list durably.

File format (text, one header line then one line per entry):
    orbitmq-epochs v1 count=N crc=C
    <epoch> <start_offset>
where C is the CRC32 of the entry lines joined by newlines.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

MAGIC = "orbitmq-epochs"
VERSION = "v1"


class EpochFileError(ValueError):
    """The epoch file on disk is malformed (names the file and what is wrong)."""


class EpochOrderError(ValueError):
    """An append would break the ordering rules (epochs strictly increase, offsets never decrease)."""


@dataclass(frozen=True, order=True)
class EpochEntry:
    """Master epoch `epoch` wrote the commitlog from `start_offset` on (until the next entry)."""

    epoch: int
    start_offset: int


def validate(entries: list[EpochEntry]) -> None:
    """Raise EpochOrderError unless epochs strictly increase and start offsets never decrease."""
    for i, e in enumerate(entries):
        if e.epoch < 0 or e.start_offset < 0:
            raise EpochOrderError(f"negative epoch or offset in entry {i}: {e}")
        if i and not (e.epoch > entries[i - 1].epoch and e.start_offset >= entries[i - 1].start_offset):
            raise EpochOrderError(f"entry {i} {e} does not follow {entries[i - 1]}")


def encode(entries: list[EpochEntry]) -> bytes:
    validate(entries)
    body = "\n".join(f"{e.epoch} {e.start_offset}" for e in entries)
    crc = zlib.crc32(body.encode())
    head = f"{MAGIC} {VERSION} count={len(entries)} crc={crc}"
    return (head + "\n" + body + ("\n" if body else "")).encode()


def decode(data: bytes, where: str = "<epoch file>") -> list[EpochEntry]:
    """Parse the file's bytes; raise EpochFileError on any inconsistency."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise EpochFileError(f"{where}: not UTF-8 text") from None
    lines = text.split("\n")
    head = lines[0].split(" ")
    if len(head) != 4 or head[0] != MAGIC or head[1] != VERSION or not head[2].startswith("count=") \
            or not head[3].startswith("crc="):
        raise EpochFileError(f"{where}: bad header {lines[0]!r}")
    try:
        count = int(head[2][6:])
        crc = int(head[3][4:])
    except ValueError:
        raise EpochFileError(f"{where}: bad header numbers {lines[0]!r}") from None
    rows = lines[1:]
    if rows and rows[-1] == "":
        rows = rows[:-1]
    if len(rows) != count:
        raise EpochFileError(f"{where}: header says {count} entries, found {len(rows)}")
    body = "\n".join(rows)
    if zlib.crc32(body.encode()) != crc:
        raise EpochFileError(f"{where}: CRC mismatch")
    entries = []
    for n, row in enumerate(rows):
        parts = row.split(" ")
        if len(parts) != 2:
            raise EpochFileError(f"{where}: bad entry line {n + 1}: {row!r}")
        try:
            entries.append(EpochEntry(int(parts[0]), int(parts[1])))
        except ValueError:
            raise EpochFileError(f"{where}: bad entry line {n + 1}: {row!r}") from None
    try:
        validate(entries)
    except EpochOrderError as e:
        raise EpochFileError(f"{where}: {e}") from None
    return entries


def append_entry(entries: list[EpochEntry], epoch: int, start_offset: int) -> list[EpochEntry]:
    """Entries plus (epoch, start_offset); a same-epoch repeat is a no-op. Pure."""
    if entries and entries[-1].epoch == epoch:
        if entries[-1].start_offset != start_offset:
            raise EpochOrderError(f"epoch {epoch} already starts at {entries[-1].start_offset}, not {start_offset}")
        return list(entries)
    new = [*entries, EpochEntry(epoch, start_offset)]
    validate(new)
    return new


def truncate_entries(entries: list[EpochEntry], offset: int) -> list[EpochEntry]:
    """The entries that still describe a log cut at `offset`: those starting before it (an epoch
    starting at the cut would be empty; its master re-adds it with its first data). Pure."""
    return [e for e in entries if e.start_offset < offset]
