"""`orbitmq admin controller ...`: inspect and steer the controller cluster.

    orbitmq admin controller metadata                 leader, peers, terms (as every node sees it)
    orbitmq admin controller replicas BROKER_SET      replicas, master, sync-state-set, liveness
    orbitmq admin controller sync-state [SET ...]     sync-state data of several (default: all) sets
    orbitmq admin controller history [--broker-set S] master changes (epoch, master, reason, time)
    orbitmq admin controller elect BROKER_SET --broker-id N   manual master switch to broker N: a live
        master hands off gracefully (new sends held, none failed; --direct: the controller alone)
    orbitmq admin controller clean BROKER_SET [--broker-id N ...]   forget stopped brokers (or the set)
    orbitmq admin controller add-node ADDR | remove-node ADDR   controller group membership
    orbitmq admin controller remove-replica BROKER_SET --broker-id N   decommission a stopped replica:
        out of the registry and the sync-state-set; refused for the master (hand off first) or if the
        set would keep fewer replicas than its minimum (the controllers' min_in_sync_replicas)

Every command takes --controllers (default $ORBITMQ_CONTROLLERS or 127.0.0.1:9878), --cluster
and --json. Errors print `error: CODE: details` and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.json_format import MessageToDict


def _common() -> argparse.ArgumentParser:
    from orbitmq.cli.admin import connection_flags

    c = argparse.ArgumentParser(add_help=False)
    connection_flags(c, top_level=False)   # --controllers/--json also before `controller`
    c.add_argument("--cluster", default="DefaultCluster")
    c.add_argument("--cluster-secret-file", default="",
                   help="sign calls with this cluster secret (needed by elect and clean when the controllers "
                        "have one; default $ORBITMQ_CLUSTER_SECRET_FILE)")
    c.add_argument("--timeout", type=float, default=5.0, help="RPC timeout in seconds")
    return c


def register_admin(groups: argparse._SubParsersAction) -> None:
    """Add `controller` under `orbitmq admin`."""
    common = _common()
    p = groups.add_parser("controller", help="controller cluster: metadata, replicas, history, elections",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cs = p.add_subparsers(dest="admin_cmd", metavar="CMD")
    c = cs.add_parser("metadata", parents=[common], help="leader, peers and terms")
    c.set_defaults(func=_metadata)
    c = cs.add_parser("replicas", parents=[common], help="a broker set's replicas and sync-state-set")
    c.add_argument("broker_set")
    c.set_defaults(func=_replicas)
    c = cs.add_parser("sync-state", parents=[common], help="sync-state data of broker sets (default: all)")
    c.add_argument("broker_sets", nargs="*")
    c.set_defaults(func=_sync_state)
    c = cs.add_parser("history", parents=[common], help="master changes")
    c.add_argument("--broker-set", default="")
    c.add_argument("--limit", type=int, default=0)
    c.set_defaults(func=_history)
    c = cs.add_parser("elect", parents=[common], help="switch the master to a named broker (graceful handoff)")
    c.add_argument("broker_set")
    c.add_argument("--broker-id", type=int, required=True)
    c.add_argument("--direct", action="store_true",
                   help="elect through the controller only, without asking a live master to hand off first "
                        "(its in-flight sends then fail with NOT_MASTER)")
    c.set_defaults(func=_elect)
    c = cs.add_parser("clean", parents=[common], help="remove stopped brokers (or the whole set) from the controller")
    c.add_argument("broker_set")
    c.add_argument("--broker-id", type=int, action="append", default=[], help="repeat; none: the whole set")
    c.set_defaults(func=_clean)
    from orbitmq.cli.admin_controller_nodes import register_nodes

    register_nodes(cs, common)
    c = cs.add_parser("remove-replica", parents=[common],
                      help="decommission a stopped replica (refused for the master or below the minimum)")
    c.add_argument("broker_set")
    c.add_argument("--broker-id", type=int, required=True)
    c.set_defaults(func=_remove_replica)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _run(args: argparse.Namespace, body: Callable[[Any], Awaitable[int]],
         credentials: Callable[[], Any] | None = None) -> int:
    """Run `body(client)` against the controllers; errors print `error: CODE: details` (exit 1), bad
    connection settings exit 2. `credentials()` (admin user|acl) gives a user to sign as; with one,
    the cluster secret is used only when given explicitly."""
    from orbitmq.common.node_auth import load_secret
    from orbitmq.controller.client import ControllerClient, ControllerError

    async def go() -> int:
        try:
            creds = credentials() if credentials is not None else None
            secret_file = args.cluster_secret_file or ("" if creds else os.environ.get("ORBITMQ_CLUSTER_SECRET_FILE", ""))
            client = ControllerClient(args.controllers.split(","), rpc_timeout_s=args.timeout,
                                      retry_deadline_s=2 * args.timeout, secret=load_secret(secret_file),
                                      credentials=creds)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            return await body(client)
        except ControllerError as e:
            print(f"error: {e.code}: {e.message}", file=sys.stderr)
            return 1
        finally:
            await client.close()

    return asyncio.run(go())


def _dump(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def _d(msg: Any) -> dict:
    return MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _print_view(v: Any) -> None:
    if not v.exists:
        print(f"{v.cluster}/{v.broker_set}: unknown to the controller")
        return
    print(f"{v.cluster}/{v.broker_set}: master {v.master_id or 'none'} {v.master_address} epoch {v.master_epoch}; "
          f"sync-state-set {list(v.sync_state_set)} (epoch {v.sss_epoch}); next id {v.next_broker_id}")
    print(f"  {'id':>4} {'address':22} {'ha address':22} {'role':8} {'alive':5} {'epoch':>5} {'max offset':>12} "
          f"{'hb age':>7}")
    for r in v.replicas:
        role = "learner" if r.learner else ("master" if r.broker_id == v.master_id else
                                            ("in-sync" if r.broker_id in v.sync_state_set else "replica"))
        print(f"  {r.broker_id:>4} {r.address:22} {r.ha_address:22} {role:8} {'yes' if r.alive else 'no':5} "
              f"{r.epoch:>5} {r.max_offset:>12} {r.heartbeat_age_s:>7.2f}")


def _metadata(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        from orbitmq.controller.client import ControllerError

        nodes = []
        for addr in c.addresses:
            try:
                nodes.append((addr, await c.get_metadata(addr)))
            except ControllerError as e:
                nodes.append((addr, e))
        if args.json:
            _dump([{"address": a, **(_d(m) if not isinstance(m, Exception) else {"error": str(m)})}
                   for a, m in nodes])
            return 0
        for addr, m in nodes:
            if isinstance(m, Exception):
                print(f"{addr}: unreachable ({m.message})")
                continue
            role = "LEADER" if m.leader_raft_address == m.self_raft_address else "follower"
            print(f"{addr}: {role} term {m.term} commit {m.commit_index} applied {m.last_applied} "
                  f"raft {m.self_raft_address} leader {m.leader_address or '?'}"
                  + (" (liveness ready)" if m.liveness_ready else "") + (" RETIRED" if m.retired else "")
                  + (" (joining)" if m.joining else ""))
            for p in m.peers:
                print(f"    peer raft {p.raft_address} grpc {p.address or '?'} "
                      f"{'connected' if p.connected else 'disconnected'}")
        return 0 if any(not isinstance(m, Exception) for _, m in nodes) else 1
    return _run(args, body)


def _replicas(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        v = await c.get_replica_info(args.cluster, args.broker_set)
        _dump(_d(v)) if args.json else _print_view(v)
        return 0 if v.exists else 1
    return _run(args, body)


def _sync_state(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        views = await c.get_sync_state_data([(args.cluster, s) for s in args.broker_sets])
        if args.json:
            _dump([_d(v) for v in views])
        else:
            for v in views:
                _print_view(v)
        return 0
    return _run(args, body)


def _history(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        hist = await c.get_history(args.cluster if args.broker_set else "", args.broker_set, args.limit)
        if args.json:
            _dump([_d(h) for h in hist])
            return 0
        for h in hist:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.time_ms / 1000))
            print(f"{when} {h.cluster}/{h.broker_set} epoch {h.master_epoch}: master {h.master_id or 'NONE'} "
                  f"(was {h.old_master_id or '-'}) sss {list(h.sync_state_set)}: {h.reason}")
        return 0
    return _run(args, body)


async def _hand_off(c: Any, args: argparse.Namespace) -> int | None:
    """Ask the set's live master to hand off to the named broker (broker RPC HandOffMaster); None
    when there is no live master to ask (the controller elects directly then)."""
    import grpc

    from orbitmq.common import dial_map
    from orbitmq.protos import broker_pb2, broker_pb2_grpc

    v = await c.get_replica_info(args.cluster, args.broker_set)
    m = next((r for r in v.replicas if r.broker_id == v.master_id and r.alive), None) if v.master_id else None
    if m is None or not v.master_address:
        return None
    from orbitmq.common.node_auth import load_secret
    from orbitmq.common.node_auth_grpc import signing_interceptors

    secret = load_secret(args.cluster_secret_file or os.environ.get("ORBITMQ_CLUSTER_SECRET_FILE", ""))
    from orbitmq.common.tls_grpc import aio_channel

    # TLS per $ORBITMQ_TLS_* (what `cluster.env` sets for the tools), as every other admin call
    async with aio_channel(dial_map.resolve(v.master_address), None,
                           interceptors=signing_interceptors(secret)) as ch:
        try:
            r = await broker_pb2_grpc.BrokerStub(ch).HandOffMaster(
                broker_pb2.HandOffRequest(broker_id=args.broker_id, timeout_s=max(1.0, args.timeout)),
                timeout=max(1.0, args.timeout) + 5)
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return None
            raise
    if args.json:
        _dump(_d(r))
    elif r.ok:
        print(f"master {v.master_id} of {args.cluster}/{args.broker_set} handed off to {r.master_id} "
              f"(epoch {r.epoch})")
    else:
        print(f"error: {r.code}: {r.reason}", file=sys.stderr)
    return 0 if r.ok else 1


def _elect(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        if not args.direct:
            rc = await _hand_off(c, args)
            if rc is not None:
                return rc
        r = await c.elect_master(args.cluster, args.broker_set, args.broker_id, designate=True)
        if args.json:
            _dump(_d(r))
        elif r.result.ok:
            print(f"master of {args.cluster}/{args.broker_set} is now {r.view.master_id} (epoch {r.view.master_epoch})")
        else:
            print(f"error: {r.result.code}: {r.result.reason}", file=sys.stderr)
        return 0 if r.result.ok else 1
    return _run(args, body)


def _clean(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        r = await c.clean_broker_data(args.cluster, args.broker_set, args.broker_id)
        if args.json:
            _dump(_d(r))
        elif r.ok:
            print(f"cleaned {args.cluster}/{args.broker_set} {args.broker_id or '(whole set)'}")
        else:
            print(f"error: {r.code}: {r.reason}", file=sys.stderr)
        return 0 if r.ok else 1
    return _run(args, body)


def _remove_replica(args: argparse.Namespace) -> int:
    async def body(c: Any) -> int:
        r = await c.remove_replica(args.cluster, args.broker_set, args.broker_id)
        if args.json:
            _dump(_d(r))
        elif r.result.ok:
            print(f"removed broker {args.broker_id} from {args.cluster}/{args.broker_set}; sync-state-set now "
                  f"{list(r.view.sync_state_set)} (epoch {r.view.sss_epoch})")
        else:
            print(f"error: {r.result.code}: {r.result.reason}", file=sys.stderr)
        return 0 if r.result.ok else 1
    return _run(args, body)
