"""`orbitmq bench KIND`: benchmarks that print one JSON object as their last line of output.

Each benchmark is a module `orbitmq.bench.<kind>` exposing `add_arguments(parser)` and
`run(args) -> dict`. The dict is printed as JSON (one line, last) and, with --out, written to a file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

# kind -> one-line help
BENCHES: dict[str, str] = {
    "store": "storage engine: append and group-commit sync appends vs raw writes and fdatasync, same dir",
    "produce": "client producer: sync/async/batch throughput, e2e latency, send_vs_grpc",
    "consume": "client consumers: pull and push consume throughput vs an empty gRPC call",
    "replication": "HA: replicated produce vs single, lag, failover time, acknowledged loss",
    "election": "controller: master failover time (kill -> new master notified), command throughput",
    "broker_send": "broker over raw stubs: empty call vs sync send, batched 1 KiB msgs/s",
    "topics": "many topics on one broker: create time per topic (first vs last 100), spread sends vs one topic",
    "footprint": "broker memory as the log grows (pages released vs all mapped) and restart time",
    "transport": "transport limit: gRPC vs framed protocol, empty calls/s and 256 KiB one-way MB/s",
    "rolling": "rolling restart of a local cluster under sync load: failed/lost sends, unavailability per step kind",
    "jetstream": "OrbitMQ beside NATS JetStream, taking turns: sync sends/s and e2e latency (needs nats-server)",
    "proxy": "RocketMQ 5 proxy: official client through orbitmq proxy vs our client direct (proxy_vs_direct)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark; prints one JSON object as the last line",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    for kind, summary in BENCHES.items():
        mod = importlib.import_module(f"orbitmq.bench.{kind}")
        kp = kinds.add_parser(kind, help=summary, description=(mod.__doc__ or summary),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        kp.add_argument("--json", action="store_true", help="print the result as JSON (always the last line)")
        kp.add_argument("--out", default=None, help="also write the JSON result to this file")
        mod.add_arguments(kp)
        kp.set_defaults(func=_runner(mod))
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _runner(mod):
    def run(args: argparse.Namespace) -> int:
        result = mod.run(args)
        line = json.dumps(result, sort_keys=True)
        if args.out:
            with open(args.out, "w") as f:
                f.write(line + "\n")
        if not args.json:
            for k, v in sorted(result.items()):
                print(f"{k}: {v}", file=sys.stderr)
        print(line, flush=True)
        return 0
    return run
