"""Which commitlog segments to delete (pure): retention time and disk-usage ratio.

Owns: the decision only (a replica that still needs a segment holds it past retention, never past
the disk ratio). The store's shell gathers segment ages and disk usage, makes sure a
metadata snapshot exists after any segment holding META records, moves queue minimums forward and
deletes the files. Never deletes the active (last) segment nor anything not yet dispatched and
flushed (`safe_end`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentInfo:
    base: int
    end: int
    mtime: float  # seconds, when the segment was last written
    size: int  # bytes it occupies on disk


def segments_to_expire(segments: list[SegmentInfo], now: float, retention_s: float, disk_used: int,
                       disk_total: int, max_ratio: float, safe_end: int, keep_from: int | None = None) -> int:
    """How many of the oldest `segments` to delete now. `keep_from`: an offset some replica still
    has to read (an HA master's lagging followers and learners); a segment ending after it is kept
    past its retention time, unless the disk is over its ratio (then the disk wins)."""
    n = 0
    used = disk_used
    for seg in segments[:-1]:
        if seg.end > safe_end:
            break
        too_old = now - seg.mtime >= retention_s
        too_full = disk_total > 0 and used / disk_total > max_ratio
        if not (too_old or too_full):
            break
        if not too_full and keep_from is not None and seg.end > keep_from:
            break
        n += 1
        used -= seg.size
    return n
