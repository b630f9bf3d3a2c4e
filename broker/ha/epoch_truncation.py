"""Where a follower's commitlog stops agreeing with its master's: the epoch comparison (pure).

Owns: the rule run in the replication handshake. Both sides' epoch lists are compared from the
follower's newest epoch back; the newest epoch both hold with the same start offset was written
by one master, so both logs agree up to the smaller of that epoch's two end offsets. The follower
truncates there (files and epoch file) before copying anything. No I/O, no clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from orbitmq.broker.ha.epochs import EpochEntry


@dataclass(frozen=True)
class TruncationPoint:
    """`offset`: the follower keeps [0, offset) and replicates from there. `common_epoch` is the
    newest epoch both sides agree on (None: nothing in common, the follower starts from scratch)."""

    offset: int
    common_epoch: int | None


def epoch_end(entries: list[EpochEntry], index: int, log_end: int) -> int:
    """Where the epoch at `index` ends on a log whose end offset is `log_end`."""
    nxt = entries[index + 1].start_offset if index + 1 < len(entries) else log_end
    return min(nxt, log_end)


def find_truncation_point(master: list[EpochEntry], master_end: int,
                          follower: list[EpochEntry], follower_end: int) -> TruncationPoint:
    """The offset up to which the follower's log equals the master's (see module docstring)."""
    if master_end < 0 or follower_end < 0:
        raise ValueError("log end offsets must be >= 0")
    by_epoch = {e.epoch: i for i, e in enumerate(master)}
    for fi in range(len(follower) - 1, -1, -1):
        fe = follower[fi]
        mi = by_epoch.get(fe.epoch)
        if mi is None or master[mi].start_offset != fe.start_offset:
            continue
        if fe.start_offset > follower_end or fe.start_offset > master_end:
            continue  # an entry beyond a log's end describes no data there
        point = min(epoch_end(follower, fi, follower_end), epoch_end(master, mi, master_end))
        return TruncationPoint(point, fe.epoch)
    return TruncationPoint(0, None)


def epoch_at(entries: list[EpochEntry], offset: int) -> EpochEntry | None:
    """The entry whose range holds `offset` (the last one starting at or before it)."""
    found = None
    for e in entries:
        if e.start_offset <= offset:
            found = e
        else:
            break
    return found


def epoch_range_end(entries: list[EpochEntry], epoch: int, log_end: int) -> int:
    """Where `epoch` ends on this log (the master never sends a frame across an epoch boundary)."""
    for i, e in enumerate(entries):
        if e.epoch == epoch:
            return epoch_end(entries, i, log_end)
    raise KeyError(f"epoch {epoch} not in the epoch list")
