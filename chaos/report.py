"""The chaos run's report: one JSON-able dict (the checker's numbers plus what was run and where
its files are) and a human summary of it. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from orbitmq.chaos.checker import FaultWindow

# the figures a run must show, in this order in the summary
KEY_FIGURES = ("lost_acked", "acked_overwritten", "max_masters_per_epoch", "acks_by_deposed_master",
               "order_violations", "epoch_regressions", "duplicates", "redeliveries", "unacked_delivered",
               "expired_unread", "faults_injected", "unavailable_median_s", "unavailable_max_s",
               "failover_median_s", "failover_max_s")


def build(figures: dict, *, seed: int, duration_s: float, kinds: Sequence[str], planned: int,
          windows: Sequence[FaultWindow], elapsed_s: float, files: dict[str, str], extra: dict | None = None) -> dict:
    """The report: run parameters, the checker's figures, every fault (with its unavailability and
    failover time), file paths, `ok`."""
    per = list(figures.get("windows", []))
    figures = {k: v for k, v in figures.items() if k != "windows"}
    rep = {"seed": seed, "duration_s": duration_s, "kinds": list(kinds), "faults_planned": planned,
           "elapsed_s": round(elapsed_s, 1), **figures,
           "faults": [{"kind": w.kind, "targets": list(w.targets), "start_s": round(w.start - (windows[0].start
                       if windows else 0), 3), "held_s": round(w.end - w.start, 3),
                       **{k: v for k, v in (per[i] if i < len(per) else {}).items() if k != "kind"}}
                      for i, w in enumerate(windows)],
           "files": dict(files), **(extra or {})}
    return rep


def summary(rep: dict) -> str:
    """Several lines for people: verdict, key figures, unavailability per fault kind, files."""
    verdict = "PASS" if rep.get("ok") else "FAIL"
    lines = [f"chaos run seed {rep.get('seed')} ({rep.get('elapsed_s')} s): {verdict}",
             f"  sends {rep.get('sends')}: {rep.get('acked')} acknowledged, {rep.get('failed_sends')} failed; "
             f"{rep.get('delivered')} distinct messages delivered"]
    lines.append("  " + ", ".join(f"{k} {rep.get(k)}" for k in KEY_FIGURES))
    if rep.get("cluster_whole_after_heal") is False:
        lines.append("  LIVENESS: the cluster was not whole again after healing (no controller leader, no master, "
                     "or a replica stayed out of the sync-state-set); see the broker logs")
    by_kind = rep.get("unavailable_by_kind") or {}
    if by_kind:
        lines.append("  unavailability per fault kind (fault -> first successful send):")
        for kind, s in by_kind.items():
            lines.append(f"    {kind:<48} x{s['count']:<3} median {s['median_s']:6.2f} s  max {s['max_s']:6.2f} s")
    handover = rep.get("failover_by_kind") or {}
    if handover:
        lines.append("  failover (fault -> first acknowledgement in a newer epoch), faults that moved the master:")
        for kind, s in handover.items():
            lines.append(f"    {kind:<48} x{s['count']:<3} median {s['median_s']:6.2f} s  max {s['max_s']:6.2f} s")
    for name, items in (rep.get("samples") or {}).items():
        if items:
            lines.append(f"  {name}: {items[:5]}")
    for name, path in (rep.get("files") or {}).items():
        lines.append(f"  {name}: {path}")
    return "\n".join(lines)
