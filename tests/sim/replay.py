"""Replay one simulated run, or sweep many and print the throughput (JSON, last line).

    python tests/sim/replay.py SEED [--full-check]     # replay a seed's derived schedule
    python tests/sim/replay.py --sweep N [--first S]   # N seeds: runs/min, faults/min, violations
A failing run prints its seed, parameters and fault schedule; pass the schedule to
`sim_world.run(seed, faults=[...], params=...)` to replay exactly that.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import sim_world as w  # noqa: E402 - needs the path above


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("seed", nargs="?", type=int, default=0)
    p.add_argument("--full-check", action="store_true", help="every invariant after every event")
    p.add_argument("--sweep", type=int, default=0, help="run this many seeds and report throughput")
    p.add_argument("--first", type=int, default=0, help="first seed of the sweep")
    a = p.parse_args()
    if not a.sweep:
        rng = random.Random(f"orbitmq-sim-params:{a.seed}")
        params = w.Params.swarm(rng)
        faults = w.faults_from_seed(rng, params.safety_s)
        print(f"seed {a.seed}\nparams {params}\nfaults {faults}")
        o = w.run(a.seed, faults, params, full_check=a.full_check)
        print(json.dumps({"seed": o.seed, "digest": o.digest, "events": o.events, "faults": o.faults,
                          "acked": o.acked, "sent": o.sent, "elections": o.elections, **o.stats}))
        return
    t = time.perf_counter()
    runs = faults = events = 0
    bad = []
    for seed in range(a.first, a.first + a.sweep):
        try:
            o = w.run(seed)
            faults += o.faults
            events += o.events
        except w.Violation as e:
            bad.append(seed)
            print(e, file=sys.stderr)
        runs += 1
    dt = time.perf_counter() - t
    print(json.dumps({"runs": runs, "seconds": round(dt, 1), "runs_per_min": round(runs / dt * 60),
                      "faults_per_min": round(faults / dt * 60), "events_per_s": round(events / dt),
                      "violations": bad}))


if __name__ == "__main__":
    main()
