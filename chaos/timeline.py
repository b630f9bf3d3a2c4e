"""The fault/election timeline of a run: as text lines and as a PNG picture (matplotlib, Agg).

`timeline_lines` is pure (records in, strings out); `plot_png` draws sends per second (acked and
failed), faults as shaded bands labelled by kind, and master elections as vertical marks labelled
with epoch and master id. Times on both are seconds since the run's start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orbitmq.chaos.checker import FaultWindow, MasterChange, Send


def per_second(times: Sequence[float], t0: float, t1: float) -> list[int]:
    """Counts per whole second from t0 to t1 (pure)."""
    n = max(1, int(t1 - t0) + 1)
    out = [0] * n
    for t in times:
        i = int(t - t0)
        if 0 <= i < n:
            out[i] += 1
    return out


def timeline_lines(t0: float, windows: Sequence[FaultWindow], changes: Sequence[MasterChange],
                   events: Sequence[dict] = ()) -> list[str]:
    """Faults, heals, skips and master changes in time order, one line each."""
    rows: list[tuple[float, str]] = []
    for w in windows:
        rows.append((w.start, f"fault {w.kind} on {', '.join(w.targets) or '-'} (healed after {w.end - w.start:.1f} s)"))
    for e in events:
        if e.get("event") == "skip":
            rows.append((e["t"], f"skipped {e.get('fault')}: {e.get('why')}"))
    for c in changes:
        if c.time > 0 and c.time >= t0 - 1:
            who = f"broker {c.master_id}" if c.master_id >= 0 else "nobody (election failed)"
            rows.append((c.time, f"{c.broker_set} epoch {c.epoch}: master {who}"))
    return [f"t+{t - t0:8.2f}s  {text}" for t, text in sorted(rows, key=lambda r: r[0])]


def plot_png(path: str | Path, t0: float, t1: float, sends: Sequence[Send], windows: Sequence[FaultWindow],
             changes: Sequence[MasterChange], title: str = "") -> Path:
    """Write the picture; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acked = per_second([s.end for s in sends if s.ok], t0, t1)
    failed = per_second([s.end for s in sends if not s.ok], t0, t1)
    xs = list(range(len(acked)))
    fig, ax = plt.subplots(figsize=(min(40.0, max(14.0, (t1 - t0) / 25)), 5), dpi=100)   # wider for long runs
    ax.plot(xs, acked, color="tab:blue", linewidth=1.2, label="acknowledged sends/s")
    if any(failed):
        ax.plot(xs, failed, color="tab:red", linewidth=0.9, alpha=0.8, label="failed sends/s")
    top = max([*acked, *failed, 1]) * 1.25
    kinds = sorted({w.kind for w in windows})
    cmap = plt.get_cmap("tab20")
    colors = {k: cmap(i % 20) for i, k in enumerate(kinds)}
    for w in windows:
        ax.axvspan(w.start - t0, max(w.end, w.start + 0.2) - t0, color=colors[w.kind], alpha=0.3, linewidth=0)
        ax.text(w.start - t0, top * 0.97, w.kind, rotation=90, va="top", ha="right", fontsize=7)
    for c in changes:
        if c.time <= 0 or not t0 - 1 <= c.time <= t1 + 1:
            continue
        x = c.time - t0
        ax.axvline(x, color="black" if c.master_id >= 0 else "tab:red", linestyle="--", linewidth=0.8)
        ax.text(x, top * 0.55, f"e{c.epoch}:{c.master_id if c.master_id >= 0 else 'none'}", rotation=90,
                va="center", ha="left", fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    from matplotlib.patches import Patch

    handles += [Patch(color=colors[k], alpha=0.3) for k in kinds]
    labels += kinds
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    ax.set_ylim(0, top)
    ax.set_xlim(0, max(1, t1 - t0))
    ax.set_xlabel("seconds since start (dashed: master elections, eEPOCH:MASTER_ID)")
    ax.set_ylabel("sends per second")
    ax.set_title(title or "OrbitMQ chaos run")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
