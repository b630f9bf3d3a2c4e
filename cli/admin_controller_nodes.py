"""`orbitmq admin controller add-node|remove-node`: change the controller group's membership
(pysyncobj dynamic membership, one change at a time).

    orbitmq admin controller add-node NEW_ADDR      NEW_ADDR: the gRPC address of a node started with
                                                    --join and --peers = the current members' Raft addresses
    orbitmq admin controller remove-node ADDR       ADDR: a member's gRPC (or Raft) address; stop it afterwards

add-node asks the new node for its Raft address, has the leader add it, then waits (--wait-s) until
the node has caught up. Running brokers and name servers learn the new list from the controllers'
answers; update the `controllers` / `peers` settings in the config files for the next restart.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def register_nodes(cs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    c = cs.add_parser("add-node", parents=[common], help="add a started node (--join) to the controller group",
                      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("address", help="the new node's gRPC address host:port")
    c.add_argument("--wait-s", type=float, default=60.0, help="wait this long for the node to catch up (0: no wait)")
    c.set_defaults(func=_add_node)
    c = cs.add_parser("remove-node", parents=[common], help="remove a node from the controller group",
                      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("address", help="the member's gRPC (or Raft) address")
    c.set_defaults(func=_remove_node)


def _print_members(r: Any, what: str) -> None:
    print(what)
    for m in r.members:
        print(f"    raft {m.raft_address} grpc {m.address or '?'} {'connected' if m.connected else 'disconnected'}")
    print("controllers = " + ",".join(sorted(m.address for m in r.members if m.address)))


def _add_node(args: argparse.Namespace) -> int:
    from orbitmq.cli.admin_controller import _d, _dump, _run
    from orbitmq.controller.client import ControllerError

    async def body(c: Any) -> int:
        try:
            md = await c.get_metadata(args.address)
        except ControllerError as e:
            print(f"error: cannot reach the new node at {args.address} ({e.message}); start it first with --join "
                  "and --peers = the current members' Raft addresses", file=sys.stderr)
            return 1
        r = await c.add_node(md.self_raft_address, args.address)
        if not r.result.ok:
            print(f"error: {r.result.code}: {r.result.reason}", file=sys.stderr)
            return 1
        caught_up = True
        if args.wait_s > 0:
            loop = asyncio.get_running_loop()
            end = loop.time() + args.wait_s
            while True:
                try:
                    md = await c.get_metadata(args.address)
                    if not md.joining and md.leader_raft_address:
                        break
                except ControllerError:
                    pass
                if loop.time() >= end:
                    caught_up = False
                    break
                await asyncio.sleep(0.2)
        if args.json:
            _dump({**_d(r), "caught_up": caught_up})
        else:
            _print_members(r, f"added {args.address} (raft {md.self_raft_address})"
                              + ("" if caught_up else f"; NOT caught up within {args.wait_s} s") + "; members:")
        return 0 if caught_up else 1
    return _run(args, body)


def _remove_node(args: argparse.Namespace) -> int:
    from orbitmq.cli.admin_controller import _d, _dump, _run

    async def body(c: Any) -> int:
        r = await c.remove_node(args.address)
        if args.json:
            _dump(_d(r))
        elif r.result.ok:
            _print_members(r, f"removed {args.address}; stop that process now. Members:")
        else:
            print(f"error: {r.result.code}: {r.result.reason}", file=sys.stderr)
        return 0 if r.result.ok else 1
    return _run(args, body)
