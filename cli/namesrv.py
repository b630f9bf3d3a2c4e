"""`orbitmq namesrv`: run a name server (route registry) until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio

from orbitmq.common import config as cfgmod
from orbitmq.common import dial_map, logs
from orbitmq.namesrv.config import NamesrvConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "namesrv", help="run a name server (topic route registry)",
        description=__doc__ + "\n\nConfig keys (TOML, top level or [namesrv]) and defaults:\n"
        + cfgmod.describe(NamesrvConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="TOML config file")
    p.add_argument("--listen", default=None, help="gRPC listen address host:port (overrides the file)")
    p.add_argument("--expire-after-s", type=float, default=None, help="replica entry expiry in seconds")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    from orbitmq.cli.controller import add_embedded_flags, embedded_hooks  # the controller engineer's flags
    add_embedded_flags(p)
    p.set_defaults(func=run, embedded_hooks=embedded_hooks)


def load_config(args: argparse.Namespace) -> NamesrvConfig:
    """Config file (table [namesrv] if present), then --set, then the named flags."""
    overrides = list(args.set)
    if args.listen is not None:
        overrides.append(f"listen={args.listen}")
    if args.expire_after_s is not None:
        overrides.append(f"expire_after_s={args.expire_after_s}")
    table = None
    if args.config:
        import tomllib
        from pathlib import Path

        try:
            table = "namesrv" if "namesrv" in tomllib.loads(Path(args.config).read_text()) else None
        except (OSError, tomllib.TOMLDecodeError):
            table = None  # load() reports the problem with the file name
    return cfgmod.load(NamesrvConfig, args.config, table, overrides)


def run(args: argparse.Namespace, hooks: list | None = None) -> int:
    """Start the name server; `hooks` add services (e.g. the embedded controller) to the same server."""
    try:
        cfg = load_config(args)
        dial_map.install(cfg.dial_map)
        hooks = list(hooks or []) + getattr(args, "embedded_hooks", lambda a, listen: [])(args, cfg.listen)
    except (cfgmod.ConfigError, ValueError) as e:
        print(f"orbitmq namesrv: {e}")
        return 2
    logs.setup("namesrv", cfg.log_level)
    from orbitmq.namesrv.server import serve

    asyncio.run(serve(cfg, hooks or []))
    return 0
