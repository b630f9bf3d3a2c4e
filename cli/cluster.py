"""`orbitmq cluster`: run a local HA cluster (controllers, name servers, broker sets) until Ctrl-C.

Every process is a real child process with its own data directory and log under --dir; the
addresses and PIDs are written to DIR/cluster.json. Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from orbitmq.common import config
from orbitmq.common.local_cluster import ClusterSpec, LocalCluster

HELP = __doc__ + """
Config file (TOML, a [cluster] table) keys and defaults:
""" + config.describe(ClusterSpec) + """

Example:
  orbitmq cluster --dir /tmp/orbit --set controllers=3 --set replicas=3 --set learners=1
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="run a local HA cluster until Ctrl-C", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML file with a [cluster] table")
    p.add_argument("--dir", help="data and logs directory (overrides the file)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any key")
    p.add_argument("--ready-timeout", type=float, default=120.0,
                   help="seconds to wait for every broker set to have a master (default 120)")
    p.set_defaults(func=run)


def load_spec(args: argparse.Namespace) -> ClusterSpec:
    overrides = list(args.set)
    if getattr(args, "dir", None):
        overrides.append(f"dir={args.dir}")
    return config.load(ClusterSpec, args.config, "cluster", overrides)


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args)
    except (config.ConfigError, ValueError) as e:
        print(f"orbitmq cluster: {e}", file=sys.stderr)
        return 2
    cluster = LocalCluster(spec)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        cluster.start()
        print(f"starting; logs in {cluster.logs_dir}", flush=True)
        cluster.wait_ready(args.ready_timeout)
        print(cluster.describe(), flush=True)
        print(f"state: {cluster.root / 'cluster.json'}; Ctrl-C to stop", flush=True)
        while not stop.wait(1.0):
            dead = [c.name for c in cluster.children if not c.alive()]
            if dead:
                print(f"exited: {', '.join(dead)} (see their logs)", file=sys.stderr, flush=True)
                cluster.children = [c for c in cluster.children if c.alive()]
    except KeyboardInterrupt:
        pass
    except TimeoutError as e:
        print(f"orbitmq cluster: {e}\n{cluster.describe()}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    return 0
