"""`orbitmq controller`: run one controller node (Raft-replicated replica state and master
elections) until SIGTERM.

A 3-node deployment on one host (each node names the other two as --peers):

  orbitmq controller --node-id c1 --listen 127.0.0.1:9878 --raft-addr 127.0.0.1:9888 \\
      --peers 127.0.0.1:9889,127.0.0.1:9890 --data-dir ./c1 --raft-secret-file raft.secret
  orbitmq controller --node-id c2 --listen 127.0.0.1:9879 --raft-addr 127.0.0.1:9889 \\
      --peers 127.0.0.1:9888,127.0.0.1:9890 --data-dir ./c2 --raft-secret-file raft.secret
  orbitmq controller --node-id c3 --listen 127.0.0.1:9880 --raft-addr 127.0.0.1:9890 \\
      --peers 127.0.0.1:9888,127.0.0.1:9889 --data-dir ./c3 --raft-secret-file raft.secret

or the same as TOML files (`--config c1.toml`), top level or in a [controller] table:

  node_id = "c1"
  listen = "127.0.0.1:9878"
  raft_addr = "127.0.0.1:9888"
  peers = ["127.0.0.1:9889", "127.0.0.1:9890"]
  data_dir = "./c1"
  raft_secret_file = "./raft.secret"

Every node of a multi-node group must be given the same Raft secret (--raft-secret-file, the
`raft_secret_file` key, or $ORBITMQ_RAFT_SECRET): pysyncobj authenticates and encrypts every Raft
message with it, and a node refuses to start a group without one (anyone who reaches an
unprotected Raft port can make the controller run code). Make one with
`python -c 'import secrets; print(secrets.token_hex(32))' > raft.secret` (mode 0600).

Brokers list every node's --listen address in their `controllers` setting. Restarting a node
(or all of them) with the same --data-dir recovers its state from the Raft journal and snapshot.

Replacing a node (pysyncobj dynamic membership): start the new node with --join and --peers =
the current members' Raft addresses, then `orbitmq admin controller add-node NEW_LISTEN`; retire
an old one with `orbitmq admin controller remove-node OLD_LISTEN` and stop it. Brokers and name
servers learn the new list from the controllers' answers. A member that lost its --data-dir is
started again empty with --join and catches up from the others.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from orbitmq.common import config as cfgmod
from orbitmq.common import dial_map, logs
from orbitmq.common.gc_freeze import freeze_startup_objects
from orbitmq.controller.config import ControllerConfig


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="TOML config file (top level or [controller] table)")
    p.add_argument("--node-id", default=None, help="node name in logs")
    p.add_argument("--listen", default=None, help="gRPC listen address host:port")
    p.add_argument("--raft-addr", "--raft", dest="raft_addr", default=None, help="Raft address host:port")
    p.add_argument("--peers", default=None, help="the other nodes' Raft addresses, comma-separated")
    p.add_argument("--data-dir", default=None, help="Raft journal and snapshot directory")
    p.add_argument("--join", action="store_true", default=None,
                   help="join a running group (new node before add-node, or a member restarted empty): "
                        "no campaigning until caught up with the leader")
    p.add_argument("--raft-secret-file", default=None,
                   help="file with the group's shared Raft secret (required with --peers)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "controller", help="run a controller node (Raft replica state, master elections)",
        description=__doc__ + "\nConfig keys and defaults:\n" + cfgmod.describe(ControllerConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p)
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace, table_default: str = "controller") -> ControllerConfig:
    """Config file ([controller] table if present), then --set, then the named flags."""
    overrides = list(args.set)
    for flag, key in (("node_id", "node_id"), ("listen", "listen"), ("raft_addr", "raft_addr"),
                      ("peers", "peers"), ("data_dir", "data_dir"), ("raft_secret_file", "raft_secret_file"),
                      ("join", "join")):
        v = getattr(args, flag, None)
        if v is not None:
            overrides.append(f"{key}={v}")
    table = None
    if args.config:
        import tomllib
        from pathlib import Path

        try:
            table = table_default if table_default in tomllib.loads(Path(args.config).read_text()) else None
        except (OSError, tomllib.TOMLDecodeError):
            table = None  # load() reports the problem with the file name
    return cfgmod.load(ControllerConfig, args.config, table, overrides)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args)
        dial_map.install(cfg.dial_map)
    except (cfgmod.ConfigError, ValueError) as e:
        print(f"orbitmq controller: {e}")
        return 2
    logs.setup("controller", cfg.log_level)
    asyncio.run(_serve(cfg))
    return 0


async def _serve(cfg: ControllerConfig) -> None:
    from orbitmq.controller.server import start_controller

    handle = await start_controller(cfg)
    freeze_startup_objects()      # (common/gc_freeze.py: no full collection walks them again)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await handle.stop()


# ---- embedded in a name server (`orbitmq namesrv --enable-controller ...`) ----------------------------

def add_embedded_flags(p: argparse.ArgumentParser) -> None:
    """Flags of a controller embedded in another process (RocketMQ's enableControllerInNamesrv)."""
    g = p.add_argument_group("embedded controller")
    g.add_argument("--enable-controller", action="store_true",
                   help="also run a controller node in this process, on the same gRPC port")
    g.add_argument("--controller-config", default=None, help="TOML file with a [controller] table")
    g.add_argument("--controller-raft-addr", default=None, help="the controller's Raft address host:port")
    g.add_argument("--controller-peers", default=None, help="the other controllers' Raft addresses")
    g.add_argument("--controller-data-dir", default=None, help="Raft journal and snapshot directory")
    g.add_argument("--controller-raft-secret-file", default=None,
                   help="file with the group's shared Raft secret (required with --controller-peers)")
    g.add_argument("--controller-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any controller config key")


def embedded_hooks(args: argparse.Namespace, listen: str) -> list:
    """Service hooks that embed a controller (empty unless --enable-controller); raises ConfigError."""
    if not getattr(args, "enable_controller", False):
        return []
    ns = argparse.Namespace(config=args.controller_config, set=list(args.controller_set), node_id=None,
                            listen=listen, raft_addr=args.controller_raft_addr, peers=args.controller_peers,
                            data_dir=args.controller_data_dir,
                            raft_secret_file=args.controller_raft_secret_file)
    cfg = load_config(ns)
    dial_map.install(cfg.dial_map)
    from orbitmq.controller.server import namesrv_hook

    return [namesrv_hook(cfg)]
