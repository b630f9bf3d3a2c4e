"""`orbitmq admin`: topic, cluster and consumer-group administration.

    orbitmq admin topic create TOPIC [--queues N] [--perm 6] ...
    orbitmq admin topic update TOPIC [--broker-sets a,b] [--queues N]   (online: extend, raise counts)
    orbitmq admin topic list|route TOPIC|delete TOPIC
    orbitmq admin cluster list [--status]
    orbitmq admin group create|delete GROUP, orbitmq admin group progress GROUP [--topic T]

Every command takes --namesrv (default $ORBITMQ_NAMESRV or 127.0.0.1:9876), --controllers
(default $ORBITMQ_CONTROLLERS or 127.0.0.1:9878) and --json (machine output), before or after the
command (`orbitmq admin --namesrv H:P cluster list` = `orbitmq admin cluster list --namesrv H:P`). Errors print `error: CODE: details` and exit 1; bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

DEFAULT_NAMESRV = "127.0.0.1:9876"
DEFAULT_CONTROLLERS = "127.0.0.1:9878"


def connection_flags(p: argparse.ArgumentParser, top_level: bool) -> None:
    """--namesrv, --controllers and --json, accepted before the subcommand (`top_level`, with the
    defaults) and after it (no defaults there, so they never hide a value given before)."""
    def default(v):
        return v if top_level else argparse.SUPPRESS

    p.add_argument("--namesrv", default=default(os.environ.get("ORBITMQ_NAMESRV", DEFAULT_NAMESRV)),
                   help="name server addresses, comma separated (default $ORBITMQ_NAMESRV or "
                        f"{DEFAULT_NAMESRV})")
    p.add_argument("--controllers", default=default(os.environ.get("ORBITMQ_CONTROLLERS", DEFAULT_CONTROLLERS)),
                   help="controller addresses, comma separated (default $ORBITMQ_CONTROLLERS or "
                        f"{DEFAULT_CONTROLLERS})")
    p.add_argument("--json", action="store_true", default=default(False), help="print JSON instead of a table")


def _common() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False)
    connection_flags(c, top_level=False)
    c.add_argument("--timeout", type=float, default=10.0, help="RPC timeout in seconds")
    c.add_argument("--credentials-file", default="", help="ACCESS_KEY:SECRET to sign broker calls with when "
                   "the brokers require signed requests (default $ORBITMQ_CREDENTIALS)")
    return c


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="administer topics, clusters and consumer groups", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    connection_flags(p, top_level=True)
    groups = p.add_subparsers(dest="admin_group", metavar="GROUP")
    common = _common()

    topic = groups.add_parser("topic", help="create, update, list, route, delete topics")
    ts = topic.add_subparsers(dest="admin_cmd", metavar="CMD")
    t = ts.add_parser("create", parents=[common], help="create a topic on every master of the cluster")
    t.add_argument("topic")
    t.add_argument("--queues", type=int, default=8, help="read and write queue count per broker set")
    t.add_argument("--read-queues", type=int, default=None)
    t.add_argument("--write-queues", type=int, default=None)
    t.add_argument("--perm", type=int, default=6, help="6 read+write, 4 read only, 2 write only")
    t.add_argument("--order", action="store_true", help="mark the topic as ordered")
    t.add_argument("--cluster", default="", help="only this cluster's broker sets")
    t.add_argument("--broker-set", action="append", default=None, help="only these broker sets (repeat)")
    t.set_defaults(func=_topic_create)
    _topic_update_parser(ts, common)
    t = ts.add_parser("list", parents=[common], help="list topics")
    t.add_argument("--cluster", default="")
    t.add_argument("--detail", action="store_true", help="queue counts and perm per broker set")
    t.set_defaults(func=_topic_list)
    t = ts.add_parser("route", parents=[common], help="show a topic's route")
    t.add_argument("topic")
    t.set_defaults(func=_topic_route)
    t = ts.add_parser("delete", parents=[common], help="delete a topic from every broker set")
    t.add_argument("topic")
    t.add_argument("--cluster", default="")
    t.set_defaults(func=_topic_delete)
    topic.set_defaults(func=lambda a: (topic.print_help(), 2)[1])

    cluster = groups.add_parser("cluster", help="cluster information")
    cs = cluster.add_subparsers(dest="admin_cmd", metavar="CMD")
    c = cs.add_parser("list", parents=[common], help="broker sets, masters and replicas")
    c.add_argument("--status", action="store_true", help="also ask every replica for its status")
    c.set_defaults(func=_cluster_list)
    cluster.set_defaults(func=lambda a: (cluster.print_help(), 2)[1])

    group = groups.add_parser("group", help="consumer groups")
    gs = group.add_subparsers(dest="admin_cmd", metavar="CMD")
    g = gs.add_parser("create", parents=[common], help="create a subscription group on every master")
    g.add_argument("group")
    g.add_argument("--broadcast", action="store_true")
    g.add_argument("--retry-max-times", type=int, default=16)
    g.add_argument("--fifo", action="store_true", help="FIFO group for RocketMQ 5 clients through `orbitmq proxy`")
    g.add_argument("--cluster", default="")
    g.set_defaults(func=_group_create)
    g = gs.add_parser("delete", parents=[common], help="delete a subscription group")
    g.add_argument("group")
    g.add_argument("--cluster", default="")
    g.set_defaults(func=_group_delete)
    g = gs.add_parser("progress", parents=[common], help="committed offset and lag per queue")
    g.add_argument("group")
    g.add_argument("--topic", default="")
    g.set_defaults(func=_group_progress)
    group.set_defaults(func=lambda a: (group.print_help(), 2)[1])

    try:   # `orbitmq admin controller ...` lives in its own module
        hook = importlib.import_module("orbitmq.cli.admin_controller")
    except ModuleNotFoundError:
        hook = None
    if hook is not None:
        hook.register_admin(groups)
    importlib.import_module("orbitmq.cli.admin_auth").register_admin(groups)   # `admin user|acl ...`
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


# ---- commands --------------------------------------------------------------------------------------


def _run(args: argparse.Namespace, body: Any) -> int:
    from orbitmq.client import Admin
    from orbitmq.client.errors import OrbitError

    try:
        from orbitmq.cli.admin_auth import admin_credentials
        admin = Admin(args.namesrv, rpc_timeout_s=args.timeout,
                      credentials=admin_credentials(getattr(args, "credentials_file", "")))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = body(admin)
    except OrbitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        admin.close()
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_human(result)
    return 0


def _print_human(result: Any) -> None:
    if result == [] or result == {}:
        print("(none)")
        return
    if isinstance(result, list) and result and isinstance(result[0], dict):
        cols = list(result[0].keys())
        rows = [[_fmt(r.get(c)) for c in cols] for r in result]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    elif isinstance(result, list):
        for x in result:
            print(x)
    elif isinstance(result, dict):
        for k, v in result.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                print(f"{k}:")
                _print_human(v)
            else:
                print(f"{k}: {_fmt(v)}")
    else:
        print(result)


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        return ",".join(f"{k}={x}" for k, x in v.items())
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def _topic_create(args: argparse.Namespace) -> int:
    def body(admin):
        sets = admin.create_topic(args.topic, args.queues, read_queues=args.read_queues,
                                  write_queues=args.write_queues, perm=args.perm, order=args.order,
                                  cluster=args.cluster, broker_sets=args.broker_set, wait_s=args.timeout)
        return {"topic": args.topic, "broker_sets": sets}
    return _run(args, body)


def _topic_update_parser(ts: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    t = ts.add_parser(
        "update", parents=[common], help="change a topic online: extend it to broker sets, raise its queue counts",
        description="Extend TOPIC to more broker sets (--broker-sets a,b: a set without it gets the topic's "
                    "current queue counts) and/or raise its queue counts (--queues N) on every target set "
                    "(default: the sets holding it). Queue counts only grow: a lower count is refused with "
                    "an error and nothing is changed. Producers and consumers pick the new queues up with "
                    "their next route refresh (route_refresh_s), without a restart.")
    t.add_argument("topic")
    t.add_argument("--queues", type=int, default=None, help="read and write queue count (default: unchanged)")
    t.add_argument("--read-queues", type=int, default=None)
    t.add_argument("--write-queues", type=int, default=None)
    t.add_argument("--perm", type=int, default=None, help="6 read+write, 4 read only, 2 write only (default: unchanged)")
    t.add_argument("--order", action="store_true", default=None, help="mark the topic as ordered")
    t.add_argument("--cluster", default="", help="only this cluster's broker sets")
    t.add_argument("--broker-sets", default="", help="comma-separated broker sets the topic must be on")
    t.add_argument("--broker-set", action="append", default=[], help="same, one per flag (repeat)")
    t.set_defaults(func=_topic_update)


def _topic_update(args: argparse.Namespace) -> int:
    sets = [b for b in args.broker_sets.split(",") if b] + list(args.broker_set)

    def body(admin):
        return admin.update_topic(args.topic, args.queues, read_queues=args.read_queues,
                                  write_queues=args.write_queues, perm=args.perm, order=args.order,
                                  cluster=args.cluster, broker_sets=sets or None, wait_s=args.timeout)
    return _run(args, body)


def _topic_list(args: argparse.Namespace) -> int:
    if args.detail:
        return _run(args, lambda admin: admin.topic_configs(args.cluster))
    return _run(args, lambda admin: admin.list_topics(args.cluster))


def _topic_route(args: argparse.Namespace) -> int:
    return _run(args, lambda admin: admin.topic_route(args.topic))


def _topic_delete(args: argparse.Namespace) -> int:
    return _run(args, lambda admin: {"topic": args.topic,
                                     "deleted_from": admin.delete_topic(args.topic, cluster=args.cluster,
                                                                        wait_s=args.timeout)})


def _cluster_list(args: argparse.Namespace) -> int:
    from orbitmq.client.admin import as_dicts
    from orbitmq.client.errors import OrbitError

    def body(admin):
        rows = as_dicts(admin.cluster_list())
        if args.status:
            out = []
            for r in rows:
                for bid, addr in r["replicas"].items():
                    try:
                        st = admin.broker_status(addr)
                        extra = {"role": st["role"], "max_offset": st["max_physical_offset"],
                                 "confirm_offset": st["confirm_offset"]}
                    except OrbitError as e:
                        extra = {"role": f"unreachable ({e.code})", "max_offset": -1, "confirm_offset": -1}
                    out.append({"cluster": r["cluster"], "broker_set": r["broker_set"], "broker_id": bid,
                                "address": addr, "epoch": r["epoch"], **extra})
            return out
        return rows
    return _run(args, body)


def _group_create(args: argparse.Namespace) -> int:
    return _run(args, lambda admin: {"group": args.group, "broker_sets": admin.create_group(
        args.group, broadcast=args.broadcast, retry_max_times=args.retry_max_times, cluster=args.cluster,
        attributes={"fifo": "true"} if args.fifo else None)})


def _group_delete(args: argparse.Namespace) -> int:
    return _run(args, lambda admin: {"group": args.group,
                                     "deleted_from": admin.delete_group(args.group, cluster=args.cluster)})


def _group_progress(args: argparse.Namespace) -> int:
    from orbitmq.client.admin import as_dicts

    def body(admin):
        rows = as_dicts(admin.consumer_progress(args.group, args.topic))
        if args.json:
            return {"group": args.group, "queues": rows, "total_lag": sum(r["lag"] for r in rows)}
        return rows + [{"topic": "TOTAL", "broker_set": "", "queue_id": "", "broker_offset": "",
                        "consumer_offset": "", "lag": sum(r["lag"] for r in rows)}] if rows else rows
    return _run(args, body)
