"""`orbitmq` entry point: builds the argument parser from one module per subcommand.

Each module listed in SUBCOMMANDS exposes `register(subparsers) -> None`, which adds its parser
and sets `func` (called with the parsed args; its int return value is the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module under orbitmq.cli, one-line summary shown even if the module fails to import)
SUBCOMMANDS: list[str] = [
    "orbitmq.cli.bench",
    "orbitmq.cli.namesrv",
    "orbitmq.cli.broker",
    "orbitmq.cli.admin",
    "orbitmq.cli.tools",
    "orbitmq.cli.controller",
    "orbitmq.cli.cluster",
    "orbitmq.cli.demo",
    "orbitmq.cli.toxiproxy",
    "orbitmq.cli.chaos",
    "orbitmq.cli.proxy",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orbitmq",
        description="OrbitMQ: a highly available message queue (RocketMQ 5 architecture, in Python).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in SUBCOMMANDS:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        rc = func(args)
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
