"""The clean-shutdown checkpoint (pure): what a cleanly closed store knows about its files, so that
the next open may take the end of the log from it instead of scanning the last segment.

Owns: the checkpoint's fields, their byte encoding (one JSON line, then the CRC-32 of that line in
hex), decoding that names the reason of every rejection, and the decision `judge(checkpoint,
observed)`: may this checkpoint be trusted for the files found at open? No files, clocks or
threads: checkpoint_file.py writes, reads and removes the file and gathers `Observed` from the
directory, the commitlog's mapped segments and the index.

A checkpoint is trusted only when everything that could have moved the end of the log since it
was written is as it was: no interrupted truncation/restart marker, the same segment files (first
and last base, count, size and mtime of the last one), the same bytes just before the end (CRC of
up to TAIL_BYTES), nothing written after the end, and the index's own dispatch checkpoint equal to
the one recorded. Anything else (missing, corrupt, from another version, mismatched) means: scan.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, fields

FORMAT = "orbitmq-clean-shutdown"
VERSION = 1
TAIL_BYTES = 1 << 20   # the CRC of at most this many bytes before the end of the log is recorded
ZERO_PROBE = 4096      # at most this many bytes after the end must still be zero (never written)
MAX_FILE_BYTES = 4096  # a checkpoint is one short line; anything longer is not one


class CheckpointError(ValueError):
    """Bytes that are not a valid checkpoint; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The store as it was closed (every byte before `log_end` fdatasync'ed, indexes synced)."""

    log_end: int         # the end of valid data: the first byte never written
    dispatched: int      # the index's dispatch checkpoint (everything before it indexed)
    first_base: int      # base offset (= file name) of the oldest segment
    last_base: int       # base offset of the last segment (the one appends go to)
    last_size: int       # file size of the last segment
    segments: int        # number of segment files
    last_mtime_ns: int   # st_mtime_ns of the last segment after the final flush
    tail_len: int        # bytes before log_end covered by tail_crc (tail_len_for; may span segments)
    tail_crc: int        # zlib.crc32 of the log's bytes [log_end - tail_len, log_end)
    closed_ms: int       # wall clock at close (for people reading logs only; never compared)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the files say at open, gathered with the checkpoint's own offsets (tail, zero probe)."""

    markers: tuple[str, ...]     # interrupted-operation markers present (TRUNCATING, RESTARTING)
    segments: int
    first_base: int              # meaningless when segments == 0
    last_base: int
    last_size: int
    last_mtime_ns: int
    index_dispatched: int | None  # the index's dispatch checkpoint (None: no index / fresh index)
    tail_crc: int | None          # CRC of the recorded tail range as found (None: range not in the file)
    zero_after_end: bool          # the bytes right after log_end (up to ZERO_PROBE) are all zero


@dataclass(frozen=True, slots=True)
class Verdict:
    trusted: bool
    reason: str


def tail_len_for(log_end: int, first_base: int) -> int:
    """How many bytes before the end the tail CRC covers: TAIL_BYTES, or the whole log if shorter
    (across segments: an empty last segment still has the previous one's tail covered)."""
    return max(0, min(TAIL_BYTES, log_end - first_base))


def tail_crc_of(chunks) -> int:
    """CRC-32 of the byte strings `chunks` taken one after another (the tail, segment by segment)."""
    crc = 0
    for c in chunks:
        crc = zlib.crc32(c, crc)
    return crc & 0xFFFFFFFF


def encode(cp: Checkpoint) -> bytes:
    """One JSON line (format, version, fields) and the CRC-32 of that line in hex on the next."""
    validate(cp)
    body = json.dumps({"format": FORMAT, "version": VERSION, **asdict(cp)}, sort_keys=True,
                      separators=(",", ":")).encode()
    return body + b"\n" + f"{zlib.crc32(body) & 0xFFFFFFFF:08x}".encode() + b"\n"


_INT_FIELDS = tuple(f.name for f in fields(Checkpoint))


def decode(data: bytes) -> Checkpoint:
    """The checkpoint in `data`; CheckpointError (with the reason) for anything else."""
    if len(data) > MAX_FILE_BYTES:
        raise CheckpointError(f"{len(data)} bytes, longer than any checkpoint")
    lines = data.split(b"\n")
    if len(lines) != 3 or lines[2] != b"":
        raise CheckpointError("not two lines (JSON, CRC)")
    body, crc_hex = lines[0], lines[1]
    if len(crc_hex) != 8 or any(c not in b"0123456789abcdef" for c in crc_hex):
        raise CheckpointError(f"bad CRC field {crc_hex[:20]!r}")
    if int(crc_hex, 16) != zlib.crc32(body) & 0xFFFFFFFF:
        raise CheckpointError("CRC mismatch")
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"not JSON ({e})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError("not an OrbitMQ clean-shutdown checkpoint")
    if type(obj.get("version")) is not int or obj["version"] != VERSION:
        raise CheckpointError(f"version {obj.get('version')!r}, this code reads {VERSION}")
    extra = set(obj) - set(_INT_FIELDS) - {"format", "version"}
    if extra:
        raise CheckpointError(f"unknown fields {sorted(extra)}")
    vals = {}
    for name in _INT_FIELDS:
        v = obj.get(name)
        if type(v) is not int:
            raise CheckpointError(f"field {name!r} missing or not an integer")
        vals[name] = v
    cp = Checkpoint(**vals)
    validate(cp)
    return cp


def validate(cp: Checkpoint) -> None:
    """Internal consistency of the fields; CheckpointError naming the first broken rule."""
    if any(getattr(cp, n) < 0 for n in _INT_FIELDS):
        raise CheckpointError("negative field")
    if cp.segments < 1:
        raise CheckpointError("no segments")
    if cp.first_base > cp.last_base or (cp.segments == 1) != (cp.first_base == cp.last_base):
        raise CheckpointError("first/last segment bases do not agree with the segment count")
    if not cp.last_base <= cp.log_end <= cp.last_base + cp.last_size:
        raise CheckpointError(f"log end {cp.log_end} outside the last segment "
                              f"[{cp.last_base}, {cp.last_base + cp.last_size}]")
    if cp.dispatched > cp.log_end:
        raise CheckpointError(f"dispatched {cp.dispatched} beyond the log end {cp.log_end}")
    if cp.tail_len != tail_len_for(cp.log_end, cp.first_base):
        raise CheckpointError("tail length does not match the log end")
    if cp.tail_crc > 0xFFFFFFFF:
        raise CheckpointError("tail CRC out of range")


def judge(cp: Checkpoint, seen: Observed) -> Verdict:
    """Whether `cp` may stand for the files `seen`: the first mismatch found, or trusted."""
    if seen.markers:
        return Verdict(False, f"an interrupted operation is pending ({', '.join(seen.markers)})")
    if seen.segments and seen.first_base != cp.first_base:
        return Verdict(False, f"the oldest segment starts at {seen.first_base}, not {cp.first_base} "
                       "(expired or replaced since)")
    if seen.segments and seen.last_base != cp.last_base:
        return Verdict(False, f"the last segment starts at {seen.last_base}, not {cp.last_base}")
    if seen.segments != cp.segments:
        return Verdict(False, f"{seen.segments} segment files, the checkpoint recorded {cp.segments}")
    if seen.last_size != cp.last_size:
        return Verdict(False, f"the last segment is {seen.last_size} bytes, not {cp.last_size}")
    if seen.last_mtime_ns != cp.last_mtime_ns:
        return Verdict(False, "the last segment was modified after the checkpoint (mtime)")
    if seen.tail_crc != cp.tail_crc:
        return Verdict(False, "the bytes before the recorded end differ (truncated or rewritten since)")
    if not seen.zero_after_end:
        return Verdict(False, "data was written after the recorded end")
    if seen.index_dispatched != cp.dispatched:
        return Verdict(False, f"the index is dispatched to {seen.index_dispatched}, the checkpoint says "
                       f"{cp.dispatched} (index rebuilt or moved since)")
    return Verdict(True, "matches the files")
