"""`orbitmq bench consume --groups G`: what many consumer groups reading one topic cost the broker.

Every group reads the whole topic, so the broker serves G deliveries of each message. Each group's
pull consumer runs in its own process (`python -m orbitmq.bench.consume_groups --worker ...`, one
JSON line out), all G at once; the parent reads the broker's CPU time (/proc) before and after. The
figures: deliveries/s summed over the groups, `broker_cpu_us_per_delivery` (broker CPU over every
message delivered to every group: the per-message share of serving a group, which used to be ~11 us
when every message was its own record, and is now per pulled batch), and, measured in the same run,
the same for one group, so `groups_vs_one` = deliveries/s with G groups over deliveries/s with one.
The clients share the machine's cores with the broker, so deliveries/s is bounded by them too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from orbitmq.bench.harness import process_cpu_s


def run_groups(namesrv: str, topic: str, groups: int, want: int, seconds: float, pull_batch: int,
               broker_pid: int, tag: str) -> dict:
    """Start `groups` worker processes at once, each reading `want` messages of `topic` in its own
    group; returns their summed deliveries/s and the broker's CPU per delivery."""
    cpu0 = process_cpu_s(broker_pid)
    t0 = time.perf_counter()
    workers = [subprocess.Popen([sys.executable, "-m", "orbitmq.bench.consume_groups", "--worker",
                                 "--namesrv", namesrv, "--topic", topic, "--group", f"bench-{tag}-{i}",
                                 "--want", str(want), "--seconds", str(seconds), "--pull-batch", str(pull_batch)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(groups)]
    got = 0
    for w in workers:
        try:
            out, err = w.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            w.kill()
            out, err = w.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if w.returncode != 0 or not lines:
            raise RuntimeError(f"consumer worker failed (rc {w.returncode}): {err[-1500:]}")
        got += int(json.loads(lines[-1])["n"])
    dt = time.perf_counter() - t0
    cpu = process_cpu_s(broker_pid) - cpu0
    return {"groups": groups, "delivered": got, "deliveries_per_s": round(got / dt),
            "broker_cpu_s": round(cpu, 2), "broker_cpu_us_per_delivery": round(cpu / max(1, got) * 1e6, 2)}


def pull_all(namesrv: str, topic: str, group: str, want: int, seconds: float, pull_batch: int) -> tuple[int, float]:
    """Read `topic` with a lite pull consumer of `group` until `want` messages or `seconds`:
    (messages read, seconds taken, start included)."""
    from orbitmq.client import PullConsumer

    c = PullConsumer(group, namesrv, pull_batch=pull_batch, max_poll_messages=1024,
                     max_cached_per_queue=4 * pull_batch)
    c.subscribe(topic)
    got = 0
    t0 = time.perf_counter()
    c.start()
    deadline = t0 + seconds
    while got < want and time.perf_counter() < deadline:
        got += len(c.poll(1.0))
    dt = time.perf_counter() - t0
    c.close()
    return got, dt


def _worker(args: argparse.Namespace) -> None:
    got, dt = pull_all(args.namesrv, args.topic, args.group, args.want, args.seconds, args.pull_batch)
    print(json.dumps({"n": got, "secs": round(dt, 3)}), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="one consumer group's reader for `orbitmq bench consume --groups`")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--namesrv", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--want", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--pull-batch", type=int, default=256)
    _worker(p.parse_args(argv))


if __name__ == "__main__":
    main()
