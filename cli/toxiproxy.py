"""`orbitmq toxiproxy`: run the embedded Toxiproxy server (the Toxiproxy HTTP API) until SIGTERM.

It answers the API of Shopify's toxiproxy-server 2.12.0 (proxies, toxics, /reset, /populate,
/version), so `toxiproxy-python` and the chaos suite drive it like the real one. Proxies listen,
and dial their upstreams, on 127.0.0.0/8 only. SIGTERM closes every listener and connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from orbitmq.common import logs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "toxiproxy", help="run the embedded Toxiproxy server (fault-injecting TCP proxies over HTTP)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:8474",
                   help="API address host:port on 127.0.0.0/8 (default 127.0.0.1:8474, the client's default)")
    p.add_argument("--config", default=None, type=Path,
                   help="JSON array of proxies created at start, like POST /populate (the reference's -config)")
    p.add_argument("--seed", default=None, type=int, help="random seed for toxicity, jitter and slicer sizes")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"),
                   help="log level (default $LOG_LEVEL, as the reference server, else INFO)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logs.setup("toxiproxy", args.log_level)
    from orbitmq.chaos.toxiproxy_server import loopback_target, serve

    try:
        loopback_target(args.listen, what="--listen")
    except ValueError as e:
        print(f"orbitmq toxiproxy: {e}")
        return 2
    if args.config is not None and not args.config.is_file():
        print(f"orbitmq toxiproxy: --config {args.config}: no such file")
        return 2

    def ready(addr: str) -> None:
        print(f"toxiproxy API listening on http://{addr}", flush=True)

    try:
        asyncio.run(serve(args.listen, config=args.config, seed=args.seed, on_ready=ready))
    except OSError as e:
        print(f"orbitmq toxiproxy: cannot listen on {args.listen}: {e}")
        return 1
    return 0
