"""The chaos checker: pure functions over recorded histories (sends, deliveries, master changes,
faults). No I/O, no clocks: every time is a number in the records (wall-clock seconds).

What it proves, as numbers (`check` returns them all):
- `lost_acked`: acknowledged sends never delivered (must be 0); messages whose queue offset fell
  below the queue's minimum by expiry and that nobody read are counted apart (`expired_unread`);
- `acked_overwritten`: a delivery at an acknowledged (queue, offset) carrying another message;
- `duplicates`: messages stored at more than one (queue, offset); `redeliveries`: the same stored
  message delivered more than once (both allowed, counted);
- `order_violations`: per ordering key, acknowledged sends delivered out of their send order;
- `unacked_delivered`: delivered although the send failed or never returned (allowed, counted);
- `max_masters_per_epoch`: distinct masters the controller history names for one (set, epoch)
  (must be <= 1), plus `epoch_regressions`;
- `acks_by_deposed_master`: acknowledgements from a broker that was not master of the epoch it
  acknowledged in, or in an epoch already superseded (by another master) before the send started;
- unavailability windows: fault start -> first successful send after it.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Send:
    """One send of the workload, as the client saw it (times are wall-clock seconds)."""

    id: str
    start: float
    end: float
    ok: bool                      # acknowledged
    key: str = ""                 # ordering key ("" = none)
    seq: int = 0                  # position in the key's send order
    broker_set: str = ""
    queue_id: int = -1
    queue_offset: int = -1
    epoch: int = -1               # epoch the acknowledging broker reported (-1: unknown)
    broker: str = ""              # address that acknowledged
    error: str = ""


@dataclass(frozen=True)
class Delivery:
    """One message handed to a consumer."""

    id: str
    broker_set: str
    queue_id: int
    queue_offset: int
    at: float = 0.0
    consumer: str = ""


@dataclass(frozen=True)
class MasterChange:
    broker_set: str
    epoch: int
    master_id: int        # -1: the election failed (no master in this epoch)
    time: float = 0.0     # wall-clock seconds on the controller that proposed it (0: unknown)


@dataclass(frozen=True)
class FaultWindow:
    """A fault as it happened: `start` when injected, `end` when healed."""

    kind: str
    start: float
    end: float
    targets: tuple[str, ...] = ()


# ---- delivery ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryReport:
    """Acknowledged sends compared with what consumers received."""

    acked: int
    delivered: int
    lost: list[str] = field(default_factory=list)        # acknowledged, never delivered
    duplicated: dict[str, int] = field(default_factory=dict)  # delivered more than once: id -> times

    @property
    def ok(self) -> bool:
        return not self.lost


def compare_delivery(acked_ids: Iterable[str], delivered_ids: Iterable[str]) -> DeliveryReport:
    """Every acknowledged id must be delivered at least once (duplicates are allowed and counted)."""
    acked = set(acked_ids)
    counts = Counter(delivered_ids)
    lost = sorted(acked - counts.keys())
    dups = {k: n for k, n in counts.items() if n > 1}
    return DeliveryReport(acked=len(acked), delivered=sum(counts.values()), lost=lost, duplicated=dups)


QueueKey = tuple[str, int]


def lost_acked(sends: Iterable[Send], deliveries: Iterable[Delivery],
               min_offsets: Mapping[QueueKey, int] | None = None,
               live: Iterable[Delivery] = ()) -> tuple[list[str], list[str]]:
    """(lost, expired_unread): acknowledged ids missing from `deliveries` (the final read-back).
    One whose acknowledged queue offset is below the queue's final minimum offset (deleted by
    expiry) is not lost: it is fine if a `live` consumer read it before, else `expired_unread`."""
    seen = {d.id for d in deliveries}
    seen_live = {d.id for d in live}
    floors = min_offsets or {}
    lost, expired = [], []
    for s in sends:
        if not s.ok or s.id in seen:
            continue
        floor = floors.get((s.broker_set, s.queue_id))
        if floor is not None and 0 <= s.queue_offset < floor:
            if s.id not in seen_live:
                expired.append(s.id)
        else:
            lost.append(s.id)
    return sorted(set(lost)), sorted(set(expired))


def duplicates(deliveries: Iterable[Delivery]) -> tuple[int, int]:
    """(duplicates, redeliveries): extra stored copies of a message (same id at another position),
    and extra deliveries of one stored copy (same position again)."""
    positions: dict[str, set[tuple[str, int, int]]] = defaultdict(set)
    per_position: Counter[tuple[str, str, int, int]] = Counter()
    for d in deliveries:
        pos = (d.broker_set, d.queue_id, d.queue_offset)
        positions[d.id].add(pos)
        per_position[(d.id, *pos)] += 1
    dup = sum(len(p) - 1 for p in positions.values())
    redeliv = sum(n - 1 for n in per_position.values())
    return dup, redeliv


def acked_overwritten(sends: Iterable[Send], deliveries: Iterable[Delivery]) -> list[str]:
    """Acknowledged positions later holding a different message (the acked one was cut and replaced)."""
    acked_at = {(s.broker_set, s.queue_id, s.queue_offset): s.id for s in sends if s.ok and s.queue_offset >= 0}
    bad = set()
    for d in deliveries:
        owner = acked_at.get((d.broker_set, d.queue_id, d.queue_offset))
        if owner is not None and owner != d.id:
            bad.add(owner)
    return sorted(bad)


def order_violations(sends: Iterable[Send], deliveries: Iterable[Delivery]) -> list[str]:
    """Per ordering key, acknowledged sends must be stored in their send order within their queue:
    going through each queue by offset (first copy of each id), an acknowledged message whose seq is
    below one already seen for its key is a violation (reported as 'key:seq'). A key whose acked
    messages sit in more than one queue counts one violation per extra queue."""
    keyed = {s.id: s for s in sends if s.ok and s.key}
    first: dict[str, tuple[str, int, int]] = {}
    for d in deliveries:
        if d.id in keyed:
            pos = (d.broker_set, d.queue_id, d.queue_offset)
            if d.id not in first or pos[2] < first[d.id][2]:
                first[d.id] = pos
    by_key: dict[str, list[tuple[tuple[str, int, int], int]]] = defaultdict(list)
    for mid, pos in first.items():
        s = keyed[mid]
        by_key[s.key].append((pos, s.seq))
    out = []
    for key, items in by_key.items():
        queues = sorted({(p[0], p[1]) for p, _ in items})
        out.extend(f"{key}:queue {q[0]}/{q[1]}" for q in queues[1:])
        for q in queues:
            high = None
            for (_, _, _off), seq in sorted(x for x in items if (x[0][0], x[0][1]) == q):
                if high is not None and seq < high:
                    out.append(f"{key}:{seq}")
                high = seq if high is None else max(high, seq)
    return sorted(out)


def unacked_delivered(sends: Iterable[Send], deliveries: Iterable[Delivery]) -> int:
    """Distinct delivered ids whose send was not acknowledged (failed, timed out, or unknown)."""
    acked = {s.id for s in sends if s.ok}
    return len({d.id for d in deliveries} - acked)


# ---- masters and epochs --------------------------------------------------------------------------------

def masters_per_epoch(changes: Iterable[MasterChange]) -> dict[tuple[str, int], set[int]]:
    """Distinct master ids per (broker set, epoch); failed elections (-1) name nobody."""
    out: dict[tuple[str, int], set[int]] = defaultdict(set)
    for c in changes:
        if c.master_id >= 0:
            out[(c.broker_set, c.epoch)].add(c.master_id)
    return dict(out)


def max_masters_per_epoch(changes: Iterable[MasterChange]) -> int:
    return max((len(v) for v in masters_per_epoch(changes).values()), default=0)


def epoch_conflicts(changes: Iterable[MasterChange]) -> list[str]:
    """Violations of "at most one master per epoch" and "epochs only grow", in words (empty = none)."""
    seen: dict[tuple[str, int], int] = {}
    last_epoch: dict[str, int] = {}
    problems = []
    for c in changes:
        if c.broker_set in last_epoch and c.epoch <= last_epoch[c.broker_set]:
            problems.append(f"{c.broker_set}: epoch {c.epoch} after epoch {last_epoch[c.broker_set]}")
        last_epoch[c.broker_set] = max(c.epoch, last_epoch.get(c.broker_set, c.epoch))
        if c.master_id < 0:
            continue
        key = (c.broker_set, c.epoch)
        if key in seen and seen[key] != c.master_id:
            problems.append(f"{c.broker_set}: epoch {c.epoch} has masters {seen[key]} and {c.master_id}")
        seen.setdefault(key, c.master_id)
    return problems


def deposed_acks(sends: Iterable[Send], changes: Sequence[MasterChange],
                 broker_ids: Mapping[str, int]) -> list[str]:
    """Acknowledgements a fenced or deposed master gave (each as 'id: why'); must be empty.

    A send acked in epoch e by broker b (`broker_ids` maps the acking address to its id) is wrong if
    the history names another master for (set, e), or if an epoch e2 > e with another master was
    proposed before the send even started: the old master's lease ran out before that election, so
    it had to refuse the send. Sends without an epoch are not judged."""
    by_set: dict[str, list[MasterChange]] = defaultdict(list)
    for c in changes:
        by_set[c.broker_set].append(c)
    master_of = {(c.broker_set, c.epoch): c.master_id for c in changes if c.master_id >= 0}
    out = []
    for s in sends:
        if not s.ok or s.epoch < 0:
            continue
        acker = broker_ids.get(s.broker, master_of.get((s.broker_set, s.epoch), -1))
        named = master_of.get((s.broker_set, s.epoch))
        if named is not None and acker >= 0 and named != acker:
            out.append(f"{s.id}: acked by broker {acker} in epoch {s.epoch}, whose master is {named}")
            continue
        for c in by_set.get(s.broker_set, ()):
            if c.epoch > s.epoch and 0 < c.time <= s.start and c.master_id != acker:
                out.append(f"{s.id}: acked in epoch {s.epoch} by broker {acker} although epoch {c.epoch} "
                           f"(master {c.master_id}) began {s.start - c.time:.3f} s before the send")
                break
    return out


# ---- availability --------------------------------------------------------------------------------------

def unavailability(faults: Iterable[FaultWindow], acks: Iterable[tuple[float, float]], run_end: float) -> list[float]:
    """Per fault (in the given order): seconds from its start to the first acknowledgement of a send
    that started at or after it (`acks` are (start, end) pairs); to `run_end` if none came. A send
    already in flight when the fault began does not count: its answer may predate the fault."""
    pairs = sorted(acks)
    starts = [a[0] for a in pairs]
    # suffix minimum of ack times: the earliest ack among sends started at index i or later
    best = [0.0] * (len(pairs) + 1)
    best[len(pairs)] = float("inf")
    for i in range(len(pairs) - 1, -1, -1):
        best[i] = min(pairs[i][1], best[i + 1])
    out = []
    for f in faults:
        first = best[bisect.bisect_left(starts, f.start)]
        out.append((first if first != float("inf") else run_end) - f.start)
    return out


def failovers(faults: Sequence[FaultWindow], sends: Iterable[Send]) -> list[float | None]:
    """Per fault: seconds from its start to the first acknowledgement in a newer epoch (of a send
    started after the fault) than any acknowledged before it, if that came before the next fault
    began; None when the fault changed no master. For faults where the old master may still
    acknowledge for a while (its lease), this is the real handover time."""
    acked = sorted((s for s in sends if s.ok and s.epoch >= 0), key=lambda s: s.end)
    order = sorted(range(len(faults)), key=lambda i: faults[i].start)
    res: dict[int, float | None] = {}
    for pos, i in enumerate(order):
        f = faults[i]
        until = faults[order[pos + 1]].start if pos + 1 < len(order) else float("inf")
        before: dict[str, int] = {}
        for s in acked:
            if s.end > f.start:
                break
            before[s.broker_set] = max(before.get(s.broker_set, -1), s.epoch)
        first = min((s.end for s in acked if s.start >= f.start and s.end < until
                     and s.epoch > before.get(s.broker_set, -1) and s.broker_set in before), default=None)
        res[i] = None if first is None else first - f.start
    return [res[i] for i in range(len(faults))]


def summarize_windows(faults: Sequence[FaultWindow], windows: Sequence[float],
                      handovers: Sequence[float | None] | None = None) -> dict:
    """Median and max unavailability overall and per fault kind (rounded to ms); with `handovers`
    (from `failovers`) the same for the faults that moved the master to a new epoch."""

    def stats(xs: list[float]) -> dict:
        return {"count": len(xs), "median_s": round(statistics.median(xs), 3) if xs else 0.0,
                "max_s": round(max(xs), 3) if xs else 0.0}

    per: dict[str, list[float]] = defaultdict(list)
    for f, w in zip(faults, windows, strict=True):
        per[f.kind].append(w)
    overall = stats(list(windows))
    out = {"unavailable_median_s": overall["median_s"], "unavailable_max_s": overall["max_s"],
           "unavailable_by_kind": {k: stats(v) for k, v in sorted(per.items())}}
    if handovers is not None:
        per_h: dict[str, list[float]] = defaultdict(list)
        for f, h in zip(faults, handovers, strict=True):
            if h is not None:
                per_h[f.kind].append(h)
        all_h = [h for h in handovers if h is not None]
        o = stats(all_h)
        out.update(failover_median_s=o["median_s"], failover_max_s=o["max_s"],
                   failover_by_kind={k: stats(v) for k, v in sorted(per_h.items())})
    return out


# ---- everything ----------------------------------------------------------------------------------------

def check(sends: Sequence[Send], deliveries: Sequence[Delivery], changes: Sequence[MasterChange],
          faults: Sequence[FaultWindow], *, broker_ids: Mapping[str, int] | None = None,
          min_offsets: Mapping[QueueKey, int] | None = None, run_end: float | None = None,
          readback: Sequence[Delivery] | None = None) -> dict:
    """Every figure of the run as numbers (plus short samples of what went wrong) and `ok`.
    `deliveries` are what consumers saw during the run, `readback` the final read of the whole
    topic (loss is judged on it; without it, on `deliveries`)."""
    live = deliveries
    if readback is None:
        lost, expired = lost_acked(sends, deliveries, min_offsets)
    else:
        lost, expired = lost_acked(sends, readback, min_offsets, live=deliveries)
        deliveries = [*deliveries, *readback]
    dup, _ = duplicates(deliveries)
    _, redeliv = duplicates(live)       # the read-back's second look is not a redelivery
    overwritten = acked_overwritten(sends, deliveries)
    order = order_violations(sends, deliveries)
    conflicts = epoch_conflicts(changes)
    deposed = deposed_acks(sends, changes, broker_ids or {})
    acked = [s for s in sends if s.ok]
    end = run_end if run_end is not None else max((s.end for s in sends), default=0.0)
    windows = unavailability(faults, ((s.start, s.end) for s in acked), end)
    handovers = failovers(faults, sends)
    mpe = max_masters_per_epoch(changes)
    regressions = sum(1 for p in conflicts if "after epoch" in p)
    out = {
        "sends": len(sends), "acked": len(acked), "failed_sends": len(sends) - len(acked),
        "delivered": len({d.id for d in deliveries}), "deliveries": len(live),
        "lost_acked": len(lost), "expired_unread": len(expired), "acked_overwritten": len(overwritten),
        "duplicates": dup, "redeliveries": redeliv, "order_violations": len(order),
        "unacked_delivered": unacked_delivered(sends, deliveries),
        "max_masters_per_epoch": mpe, "epoch_regressions": regressions,
        "acks_by_deposed_master": len(deposed), "faults_injected": len(faults),
        **summarize_windows(faults, windows, handovers),
        "windows": [{"kind": f.kind, "unavailable_s": round(w, 3), "failover_s": None if h is None else round(h, 3)}
                    for f, w, h in zip(faults, windows, handovers, strict=True)],
        "samples": {"lost": lost[:10], "overwritten": overwritten[:10], "order": order[:10],
                    "epochs": conflicts[:10], "deposed": deposed[:10]},
    }
    out["ok"] = (not lost and not overwritten and not order and mpe <= 1 and not regressions and not deposed)
    return out
