"""`orbitmq chaos run`: the seeded chaos suite on a local HA cluster.

Starts 3 controllers, name servers and a broker set of 3 replicas plus a learner (real processes,
every link through a TCP proxy so that network faults can be injected), runs producers with sync
sends (some with ordering keys) and concurrent consumers, and lets a seeded nemesis inject faults
for --duration seconds: kill -9 / pause the master, isolate it from the controllers or from its
followers, cut a follower, slow or flap the replication link, kill the controller leader,
partition the controllers 1/2, kill a learner, and combinations of two (runs of 300 s or more
also get small segments, short retention and "expiry under load"). Then it heals everything,
settles, reads the whole topic back and checks: lost_acked (must be 0), max_masters_per_epoch (<= 1),
acks_by_deposed_master (0), order_violations (0), duplicates and unacked_delivered (counted), and
the unavailability after each fault. The same seed gives the same schedule.

Output: a live status line and a summary on stderr; the run directory holds report.json,
history.json, timeline.txt and timeline.png. With --json the last line of stdout is the report.
Exit code 0 only if every safety check passed. `orbitmq chaos check --dir RUN_DIR` runs the
checker again over a recorded history.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from orbitmq.chaos import nemesis

LONG_RUN_S = 300.0   # runs at least this long check expiry under load by default


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chaos", help="chaos suite: seeded faults under load, then check nothing acked was lost",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="chaos_command", metavar="ACTION")
    r = csub.add_parser("run", help="one seeded chaos run (see `orbitmq chaos --help`)", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--duration", type=float, default=120.0, help="seconds of fault injection (default 120)")
    r.add_argument("--seed", type=int, default=1, help="nemesis seed: same seed, same schedule (default 1)")
    r.add_argument("--dir", help="run directory (default: a new temporary directory)")
    r.add_argument("--kinds", default=",".join(nemesis.DEFAULT_KINDS),
                   help="comma-separated fault kinds (default: all but expiry_under_load); known: "
                        + ", ".join(sorted(nemesis.KINDS)))
    r.add_argument("--combo-ratio", type=float, default=0.25, help="chance a fault is a combination of two")
    r.add_argument("--expiry", choices=("auto", "on", "off"), default="auto",
                   help="small segments (256 KiB) + short retention (90 s) and the expiry_under_load fault; "
                        f"auto: on for runs of {LONG_RUN_S:.0f} s or more (default auto)")
    r.add_argument("--rate", type=float, default=120.0, help="sync sends per second, all producers (default 120)")
    r.add_argument("--producers", type=int, default=3, help="producer threads; the first sends with ordering keys")
    r.add_argument("--consumers", type=int, default=2, help="consumer threads in one group")
    r.add_argument("--settle", type=float, default=10.0, help="seconds of load after healing (default 10)")
    r.add_argument("--toxiproxy", default=os.environ.get("TOXIPROXY_URL"),
                   help="use this toxiproxy server (URL) for network faults (default $TOXIPROXY_URL)")
    r.add_argument("--json", action="store_true", help="print the report as JSON (last line of stdout)")
    r.set_defaults(func=run_cmd)
    c = csub.add_parser("check", help="check a recorded run again (RUN_DIR/history.json), no cluster needed")
    c.add_argument("--dir", required=True, help="the run directory of an earlier `orbitmq chaos run`")
    c.add_argument("--json", action="store_true", help="print the figures as JSON (last line)")
    c.set_defaults(func=check_cmd)
    p.set_defaults(func=lambda _a: (p.print_help(), 2)[1])


def run_cmd(args: argparse.Namespace) -> int:
    from orbitmq.chaos import report
    from orbitmq.chaos.run import RunOptions, run

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in nemesis.KINDS]
    if unknown or not kinds:
        print(f"orbitmq chaos run: unknown fault kinds {unknown}; known: {', '.join(sorted(nemesis.KINDS))}",
              file=sys.stderr)
        return 2
    if args.duration <= 0 or args.rate <= 0 or args.producers < 1 or args.consumers < 1:
        print("orbitmq chaos run: need --duration > 0, --rate > 0, --producers >= 1, --consumers >= 1",
              file=sys.stderr)
        return 2
    opts = RunOptions(duration_s=args.duration, seed=args.seed,
                      run_dir=args.dir or tempfile.mkdtemp(prefix="orbitmq-chaos-"), kinds=kinds,
                      combo_ratio=args.combo_ratio, toxiproxy_url=args.toxiproxy, rate=args.rate,
                      producers=args.producers, consumers=args.consumers, settle_s=args.settle,
                      expiry=args.expiry == "on" or (args.expiry == "auto" and args.duration >= LONG_RUN_S))
    try:
        rep = run(opts)
    except Exception as e:  # noqa: BLE001 - a run that could not complete is a failed run, said in JSON too
        rep = {"ok": False, "error": f"{type(e).__name__}: {e}", "seed": args.seed, "run_dir": opts.run_dir}
        print(f"orbitmq chaos run: {rep['error']}", file=sys.stderr)
    text = report.summary(rep) if "sends" in rep else ""
    if args.json:
        if text:
            print(text, file=sys.stderr, flush=True)
        print(json.dumps({k: v for k, v in rep.items() if k != "timeline"}, sort_keys=True), flush=True)
    else:
        print(text or json.dumps(rep), flush=True)
        if rep.get("timeline"):
            print("timeline:\n" + "\n".join("  " + line for line in rep["timeline"]), flush=True)
    return 0 if rep.get("ok") else 1


def check_cmd(args: argparse.Namespace) -> int:
    from orbitmq.chaos.run import recheck

    try:
        figures = recheck(args.dir)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"orbitmq chaos check: cannot read {args.dir}/history.json: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(figures, sort_keys=True), flush=True)
    else:
        from orbitmq.chaos import report

        print(report.summary({**figures, "seed": "(recorded)", "elapsed_s": "-"}), flush=True)
    return 0 if figures.get("ok") else 1
