"""`orbitmq broker --config FILE`: run one broker replica until SIGTERM.

Flags override the file; --set KEY=VALUE overrides any key. SIGTERM unregisters from every name
server, stops serving, flushes and closes the store.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from orbitmq.broker.config import BrokerConfig
from orbitmq.common import config as cfgmod
from orbitmq.common import dial_map, logs

FLAGS = {"listen": "gRPC listen address host:port", "namesrv": "name servers, comma separated",
         "store_dir": "storage directory", "cluster": "cluster name", "broker_set": "broker set name",
         "broker_id": "id within the broker set"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "broker", help="run a broker (stores messages, serves producers and consumers)",
        description=__doc__ + "\nConfig keys (TOML top level; [store] passes StoreConfig keys) and defaults:\n"
        + cfgmod.describe(BrokerConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="TOML config file (see config/broker.example.toml)")
    for key, help_text in FLAGS.items():
        p.add_argument("--" + key.replace("_", "-"), dest=key, default=None, help=help_text + " (overrides the file)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace) -> BrokerConfig:
    overrides = list(args.set)
    for key in FLAGS:
        v = getattr(args, key, None)
        if v is not None:
            overrides.append(f"{key}={v}")
    return cfgmod.load(BrokerConfig, args.config, None, overrides)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args)
        dial_map.install(cfg.dial_map)
    except (cfgmod.ConfigError, ValueError) as e:
        print(f"orbitmq broker: {e}")
        return 2
    logs.setup(f"broker[{cfg.broker_set}/{cfg.broker_id}]", cfg.log_level)
    from orbitmq.common.heap import keep_freed_heap

    keep_freed_heap(cfg.heap_keep_mb * 1024 * 1024)
    from orbitmq.broker.ha.epochs import EpochFileError
    from orbitmq.broker.ha.role_manager import make_hooks
    from orbitmq.broker.server import run as serve
    from orbitmq.broker.store.errors import StoreError
    from orbitmq.controller.agent import IdentityError

    try:
        asyncio.run(serve(cfg, make_hooks(cfg)))
    except (IdentityError, StoreError, EpochFileError, OSError) as e:
        # a file read at start is corrupt or unreadable, or the port is taken: say which, and stop
        logging.getLogger("orbitmq.broker").error("cannot start: %s", e)
        print(f"orbitmq broker: cannot start: {e}", file=sys.stderr)
        return 2
    return 0
