"""`orbitmq proxy`: serve RocketMQ 5's gRPC protocol (apache.rocketmq.v2.MessagingService).

Existing RocketMQ 5 clients (Java, Go, Python, ...) point their endpoint at --listen.
  local mode:   orbitmq proxy --mode local --listen 127.0.0.1:8081 --data ./proxy-data --auto-create-topics
                (an embedded broker store in the proxy process; for development and tests)
  cluster mode: orbitmq proxy --mode cluster --namesrv 127.0.0.1:9876 --listen 127.0.0.1:8081
                (stateless: forwards to the masters of the broker sets named by the routes; topics and
                groups are the brokers': `orbitmq admin topic create`, `orbitmq admin group create [--fifo]`)
"""

from __future__ import annotations

import argparse
import asyncio

from orbitmq.common import config as cfgmod
from orbitmq.common import logs
from orbitmq.proxy.config import ProxyConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "proxy", help="serve the RocketMQ 5 gRPC protocol to existing RocketMQ 5 clients",
        description=__doc__ + "\nConfig keys (TOML, top level or [proxy]) and defaults:\n" + cfgmod.describe(ProxyConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="TOML config file")
    p.add_argument("--mode", choices=["local", "cluster"], default=None, help="local (embedded store) or cluster")
    p.add_argument("--listen", default=None, help="gRPC listen address host:port")
    p.add_argument("--namesrv", default=None, help="cluster mode: name server addresses, comma-separated")
    p.add_argument("--data", default=None, help="local mode: data directory of the embedded store")
    p.add_argument("--auto-create-topics", action="store_true", default=None, help="local mode: create unknown topics")
    p.add_argument("--group", action="append", default=[], metavar="NAME[:fifo][:max_attempts=N]",
                   help="local mode: create a consumer group with these settings (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace) -> ProxyConfig:
    overrides = list(args.set)
    for flag, key in (("mode", "mode"), ("listen", "listen"), ("namesrv", "namesrv"), ("data", "data_dir")):
        v = getattr(args, flag)
        if v is not None:
            overrides.append(f"{key}={v}")
    if args.auto_create_topics:
        overrides.append("auto_create_topics=true")
    if args.group:
        overrides.append("groups=" + ",".join(args.group))
    return cfgmod.load(ProxyConfig, args.config, None, overrides)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args)
    except cfgmod.ConfigError as e:
        print(f"orbitmq proxy: {e}")
        return 2
    logs.setup("proxy", cfg.log_level)
    from orbitmq.proxy.server import serve

    asyncio.run(serve(cfg))
    return 0
