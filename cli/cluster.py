"""`orbitmq cluster`: a whole local HA cluster (controllers, name servers, broker sets) as a tool.

  up        start it in the background, wait until every broker set has a master and routes are
            served, print every endpoint and return (--chaos: every node-to-node link through
            its own Toxiproxy proxy, so partitions can be made and healed)
  status    controller leader; each set's master, epoch, sync-state-set, learners, replication lag
  down      stop every process by PID (and the proxies)
  kill | pause | resume | restart NODE     kill -9, SIGSTOP, SIGCONT, restart (--wipe: empty data dir)
  partition A,B / C [--one-way] | slow SRC DST | flap SRC DST | heal     network faults (--chaos)
  rolling-restart   restart every process once, one at a time, in a safe order: learners,
            followers, then masters (a master hands off to a caught-up follower on SIGTERM), name
            servers, controllers with the Raft leader last; waits for a healthy cluster (a
            controller leader, every set with a master and a full sync-state-set, routes served)
            between steps
  run       the same cluster in the foreground until Ctrl-C (no chaos mode)

Nodes: c1..c3 (controllers), n1, n2 (name servers), broker-a-1.. (replicas, learners last), the
pseudo-node `client`; in partitions also a set name (all its replicas), `controllers`, `namesrvs`.
Every command takes --dir (default $ORBITMQ_CLUSTER_DIR, else ./orbitmq-cluster); the addresses,
PIDs and links are in DIR/cluster.json, and `. DIR/cluster.env` points `orbitmq admin`,
`produce` and `consume` at the cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from orbitmq.common import config
from orbitmq.common.local_cluster import ClusterSpec, LocalCluster

SPEC_HELP = """
Cluster file (TOML, a [cluster] table) keys and defaults:
""" + config.describe(ClusterSpec) + """

Example file:
  [cluster]
  broker_sets = ["broker-a", "broker-b"]
  [cluster.sets.broker-b]
  replicas = 2
  learners = 0
  [cluster.broker_settings]
  register_interval_s = "5"
  [cluster.nodes.broker-a-1.settings]
  election_priority = "1"

Examples:
  orbitmq cluster up --dir /tmp/orbit --chaos
  orbitmq cluster up --dir /tmp/orbit-tls --secure      # TLS everywhere (add --mtls for mutual TLS)
  orbitmq cluster status --dir /tmp/orbit
  orbitmq cluster partition --dir /tmp/orbit broker-a-1 / controllers
  orbitmq cluster heal --dir /tmp/orbit
  orbitmq cluster down --dir /tmp/orbit
"""

DEFAULT_DIR = "./orbitmq-cluster"


def _dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default=os.environ.get("ORBITMQ_CLUSTER_DIR"),
                   help="cluster directory (default $ORBITMQ_CLUSTER_DIR or ./orbitmq-cluster)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="a local HA cluster as a tool: up, status, faults, down",
                       description=__doc__ + SPEC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    cs = p.add_subparsers(dest="cluster_cmd", metavar="COMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    def spec_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", help="TOML file with a [cluster] table")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a [cluster] key")
        q.add_argument("--ready-timeout", type=float, default=180.0,
                       help="seconds to wait for every broker set to have a master (default 180)")

    q = cs.add_parser("up", help="start in the background and wait until ready")
    _dir_arg(q)
    spec_args(q)
    q.add_argument("--chaos", action="store_true", help="every node-to-node link through its own Toxiproxy proxy")
    q.add_argument("--secure", action="store_true",
                   help="TLS everywhere: a throwaway CA and node certificates under DIR/tls; cluster.env gives "
                        "clients the CA ($ORBITMQ_TLS_CA)")
    q.add_argument("--mtls", action="store_true",
                   help="with --secure: controllers and replication ports require client certificates (mutual TLS)")
    q.add_argument("--toxiproxy", default=None, metavar="URL",
                   help="Toxiproxy API (default $TOXIPROXY_URL, else an embedded server started for the cluster)")
    q.add_argument("--fresh", action="store_true",
                   help="delete the data of a stopped cluster in DIR first (without it, a stopped cluster "
                        "starts again on its addresses with its data)")
    q.add_argument("--only", default=None, metavar="NODES",
                   help="start only these nodes (comma-separated; for a multi-host file: the ones on this host); "
                        "does not wait for the whole cluster")
    q.set_defaults(func=cmd_up)

    q = cs.add_parser("down", help="stop every process by PID")
    _dir_arg(q)
    q.set_defaults(func=cmd_down)

    q = cs.add_parser("status", help="leader, masters, epochs, sync-state-sets, learners, lag")
    _dir_arg(q)
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=cmd_status)

    for name, text in (("kill", "SIGKILL a node"), ("pause", "SIGSTOP a node"), ("resume", "SIGCONT a node")):
        q = cs.add_parser(name, help=text)
        _dir_arg(q)
        q.add_argument("node")
        q.set_defaults(func=cmd_process, action=name)
    q = cs.add_parser("restart", help="stop (if running) and start a node again, keeping its data unless --wipe")
    _dir_arg(q)
    q.add_argument("node")
    q.add_argument("--wipe", action="store_true", help="start with an empty data directory")
    q.set_defaults(func=cmd_process, action="restart")

    q = cs.add_parser("rolling-restart", help="restart every process once, one at a time, in a safe order")
    _dir_arg(q)
    q.add_argument("--step-timeout", type=float, default=180.0,
                   help="seconds to wait for a healthy cluster after each restart (default 180)")
    q.add_argument("--json", action="store_true", help="print the steps as one JSON object on the last line")
    q.set_defaults(func=cmd_rolling)

    q = cs.add_parser("partition", help="cut A from B: `partition A,B / C` (--one-way: only A -> B)")
    _dir_arg(q)
    q.add_argument("sides", nargs="+", metavar="A,B / C")
    q.add_argument("--one-way", action="store_true", help="only bytes from the left side to the right are lost")
    q.set_defaults(func=cmd_partition)
    q = cs.add_parser("slow", help="delay bytes from SRC to DST")
    _dir_arg(q)
    q.add_argument("src")
    q.add_argument("dst")
    q.add_argument("--latency-ms", type=int, default=200)
    q.add_argument("--jitter-ms", type=int, default=0)
    q.add_argument("--rate-kbps", type=int, default=0, help="also limit to this many KB/s (0: no limit)")
    q.set_defaults(func=cmd_link, action="slow")
    q = cs.add_parser("flap", help="reset every connection carrying bytes from SRC to DST")
    _dir_arg(q)
    q.add_argument("src")
    q.add_argument("dst")
    q.set_defaults(func=cmd_link, action="flap")
    q = cs.add_parser("heal", help="remove every network fault")
    _dir_arg(q)
    q.set_defaults(func=cmd_link, action="heal")

    q = cs.add_parser("run", help="run in the foreground until Ctrl-C (no chaos mode)",
                      description="Run the cluster in the foreground until Ctrl-C or SIGTERM." + SPEC_HELP,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--dir", help="data and logs directory (overrides the file)")
    spec_args(q)
    q.set_defaults(func=cmd_run)


def _fail(text: str, code: int = 1) -> int:
    print(f"orbitmq cluster: {text}", file=sys.stderr)
    return code


def load_spec(args: argparse.Namespace) -> ClusterSpec:
    overrides = list(args.set)
    if getattr(args, "secure", False) or getattr(args, "mtls", False):
        overrides.append("secure=true")
    if getattr(args, "mtls", False):
        overrides.append("mtls=true")
    if getattr(args, "dir", None):
        overrides.append(f"dir={args.dir}")
    return config.load(ClusterSpec, args.config, "cluster", overrides)


def _open(args: argparse.Namespace):
    from orbitmq.chaos.cluster import ChaosCluster

    return ChaosCluster.open(args.dir or DEFAULT_DIR)


def cmd_up(args: argparse.Namespace) -> int:
    from orbitmq.chaos.cluster import ChaosCluster, ClusterError

    try:
        spec = load_spec(args)
    except (config.ConfigError, ValueError) as e:
        return _fail(str(e), 2)
    run_dir = args.dir or spec.dir or DEFAULT_DIR
    only = [x for x in (args.only or "").split(",") if x.strip()] or None
    print(f"starting in {os.path.abspath(run_dir)} (logs in {os.path.join(os.path.abspath(run_dir), 'logs')})",
          flush=True)
    try:
        cluster = ChaosCluster.up(run_dir, spec, chaos=args.chaos, toxiproxy_url=args.toxiproxy,
                                  ready_timeout=args.ready_timeout, only=only, fresh=args.fresh)
    except (ClusterError, ValueError, TimeoutError) as e:
        return _fail(str(e))
    print("\n".join(cluster.endpoints()), flush=True)
    if not only:
        _print_status(cluster.status())
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from orbitmq.chaos.cluster import ClusterError

    try:
        cluster = _open(args)
        cluster.down()
    except ClusterError as e:
        return _fail(str(e))
    print(f"stopped the cluster in {cluster.root}")
    return 0


def _print_status(st: dict) -> None:
    print(f"controller leader: {st['controller_leader'] or 'none'}")
    for bset, s in st["sets"].items():
        lag = ", ".join(f"{k} {v}" for k, v in sorted(s["lag"].items())) or "-"
        print(f"{bset}: master {s['master'] or 'none'}, epoch {s['epoch']}, sync-state-set "
              f"[{', '.join(s['sss'])}], learners [{', '.join(s['learners'])}], lag (bytes) {lag}")
    down = [n for n, up in st.get("processes", {}).items() if not up]
    if down:
        print(f"not running: {', '.join(down)}")
    if st.get("faults"):
        print("network faults: " + "; ".join(f"{k} {'+'.join(v)}" for k, v in sorted(st["faults"].items())))


def cmd_status(args: argparse.Namespace) -> int:
    from orbitmq.chaos.cluster import ClusterError

    try:
        st = _open(args).status()
    except ClusterError as e:
        return _fail(str(e))
    if args.json:
        print(json.dumps(st, sort_keys=True))
    else:
        _print_status(st)
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from orbitmq.chaos.cluster import ClusterError

    try:
        cluster = _open(args)
        if args.action == "restart":
            cluster.restart(args.node, wipe=args.wipe)
        else:
            getattr(cluster, args.action)(args.node)
    except (ClusterError, TimeoutError) as e:
        return _fail(str(e))
    print(f"{args.action} {args.node}: done (pid {cluster.pid(args.node)})")
    return 0


def cmd_rolling(args: argparse.Namespace) -> int:
    import time

    from orbitmq.chaos.cluster import ClusterError
    from orbitmq.chaos.rolling import StepRecord, records_json, rolling_restart

    def show(what: str, x) -> None:
        if isinstance(x, StepRecord):
            print(f"  {x.node:<14} {x.kind:<18} restarted in {x.restart_s:.2f}s, cluster healthy after "
                  f"{x.healthy_s:.2f}s", flush=True)
        else:
            print(f"restarting {x.node} ({x.kind})", flush=True)

    t0 = time.monotonic()
    try:
        records = rolling_restart(_open(args), args.step_timeout, on_step=None if args.json else show)
    except (ClusterError, TimeoutError) as e:
        return _fail(str(e))
    total = round(time.monotonic() - t0, 3)
    if args.json:
        print(json.dumps({"ok": True, "total_s": total, "steps": records_json(records)}))
    else:
        print(f"rolling restart done: {len(records)} processes in {total:.1f}s")
    return 0


def parse_sides(tokens: list[str]) -> tuple[list[str], list[str]]:
    """['a,b', '/', 'c'] or ['a,b/c'] -> (['a', 'b'], ['c'])."""
    left, sep, right = " ".join(tokens).partition("/")
    a = [x for x in left.replace(",", " ").split() if x]
    b = [x for x in right.replace(",", " ").split() if x]
    if not sep or not a or not b:
        raise ValueError("write the two sides as `A,B / C`")
    return a, b


def cmd_partition(args: argparse.Namespace) -> int:
    from orbitmq.chaos.cluster import ClusterError

    try:
        a, b = parse_sides(args.sides)
        _open(args).partition(a, b, one_way=args.one_way)
    except (ClusterError, ValueError) as e:
        return _fail(str(e))
    print(f"partitioned {','.join(a)} {'->' if args.one_way else '<->'} {','.join(b)}")
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    from orbitmq.chaos.cluster import ClusterError

    try:
        cluster = _open(args)
        if args.action == "heal":
            cluster.heal()
            print("healed: no network faults")
        elif args.action == "slow":
            cluster.slow_link(args.src, args.dst, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
                              rate_kbps=args.rate_kbps)
            print(f"slowed {args.src} -> {args.dst}")
        else:
            cluster.flap_link(args.src, args.dst)
            print(f"flapping {args.src} -> {args.dst}")
    except (ClusterError, ValueError) as e:
        return _fail(str(e))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args)
    except (config.ConfigError, ValueError) as e:
        return _fail(str(e), 2)
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
