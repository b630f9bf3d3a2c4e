"""The clean-shutdown checkpoint on disk (thin shell over checkpoint.py).

Owns: the file `<store_dir>/CLEAN_SHUTDOWN` (written only by `MessageStore.close()` after every
append is fdatasync'ed and the index synced; replaced durably with common/durable.py; removed
durably by `open()` before the store takes any write), reading it, and gathering `Observed` from
the mapped segments, the markers and the index. The rules are all in checkpoint.py.
"""

from __future__ import annotations

import os

from orbitmq.broker.store import checkpoint as ck
from orbitmq.broker.store.commitlog import CommitLog
from orbitmq.common.durable import remove_file, replace_file

FILE_NAME = "CLEAN_SHUTDOWN"


def path_in(store_dir: str) -> str:
    return os.path.join(store_dir, FILE_NAME)


def read(path: str) -> tuple[ck.Checkpoint | None, str]:
    """(checkpoint, "") or (None, why not: "missing" or the decoding error)."""
    try:
        with open(path, "rb") as f:
            data = f.read(ck.MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        return None, f"unreadable ({e})"
    try:
        return ck.decode(data), ""
    except ck.CheckpointError as e:
        return None, f"corrupt ({e.reason})"


def write(path: str, cp: ck.Checkpoint) -> None:
    replace_file(path, ck.encode(cp))


def remove(path: str) -> None:
    """Durably remove the checkpoint (and a temporary file an interrupted write left)."""
    remove_file(path + ".tmp")
    remove_file(path)


def _tail_crc(log: CommitLog, log_end: int, tail_len: int) -> int | None:
    """CRC of the log's bytes [log_end - tail_len, log_end), read from the mapped segments (None
    when the segments found do not hold that whole range)."""
    lo = log_end - tail_len
    segs = log.segments
    if not segs or lo < segs[0].base or log_end > segs[-1].base + segs[-1].size:
        return None
    chunks = []
    for seg in segs:
        a, b = max(lo, seg.base), min(log_end, seg.base + seg.size)
        if a < b:
            chunks.append(seg.mm[a - seg.base:b - seg.base])
    return ck.tail_crc_of(chunks)


def _zero_after(log: CommitLog, log_end: int) -> bool:
    seg = log.segments[-1]
    rel = log_end - seg.base
    if not 0 <= rel <= seg.size:
        return False
    probe = seg.mm[rel:min(seg.size, rel + ck.ZERO_PROBE)]
    return probe.count(0) == len(probe)


def snapshot(log: CommitLog, dispatched: int, now_ms: int) -> ck.Checkpoint:
    """The checkpoint of `log` as it is now (the caller has flushed it and holds every writer off)."""
    segs = log.segments
    last = segs[-1]
    end = log.max_offset
    tail_len = ck.tail_len_for(end, segs[0].base)
    crc = _tail_crc(log, end, tail_len)
    if crc is None:
        raise ValueError(f"log end {end} outside the last segment {last.path}")
    return ck.Checkpoint(log_end=end, dispatched=dispatched, first_base=segs[0].base, last_base=last.base,
                         last_size=last.size, segments=len(segs), last_mtime_ns=os.stat(last.path).st_mtime_ns,
                         tail_len=tail_len, tail_crc=crc, closed_ms=now_ms)


def observe(store_dir: str, log: CommitLog, markers: tuple[str, ...], index_dispatched: int | None,
            cp: ck.Checkpoint) -> ck.Observed:
    """The facts `judge` compares with `cp`, from segments mapped (not scanned) by `log`."""
    present = tuple(m for m in markers if os.path.exists(os.path.join(store_dir, m)))
    segs = log.segments
    if not segs:
        return ck.Observed(present, 0, 0, 0, 0, 0, index_dispatched, None, False)
    last = segs[-1]
    in_last = last.base <= cp.log_end <= last.base + last.size
    return ck.Observed(markers=present, segments=len(segs), first_base=segs[0].base, last_base=last.base,
                       last_size=last.size, last_mtime_ns=os.fstat(last.fd).st_mtime_ns,
                       index_dispatched=index_dispatched,
                       tail_crc=_tail_crc(log, cp.log_end, cp.tail_len),
                       zero_after_end=in_last and _zero_after(log, cp.log_end))
