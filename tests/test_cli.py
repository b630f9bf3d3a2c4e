"""Every `orbitmq` subcommand answers --help (each explains itself)."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from orbitmq.cli.main import build_parser


def _all_commands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _all_commands(sub, (*prefix, name))


def test_every_subcommand_has_help():
    cmds = list(_all_commands(build_parser()))
    assert cmds, "no subcommands registered"

    def help_of(cmd: tuple[str, ...]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orbitmq.cli.main", *cmd, "--help"], capture_output=True,
                              text=True, timeout=120)

    with ThreadPoolExecutor(3) as pool:     # (each is a fresh interpreter: most of the time is its start)
        for cmd, r in zip(cmds, pool.map(help_of, cmds), strict=True):
            assert r.returncode == 0, (cmd, r.stderr)
            assert "usage:" in r.stdout


@pytest.mark.parametrize("argv, namesrv, controllers, as_json", [
    (["admin", "--namesrv", "10.1.1.1:1", "cluster", "list"], "10.1.1.1:1", None, False),
    (["admin", "cluster", "list", "--namesrv", "10.1.1.2:1"], "10.1.1.2:1", None, False),
    (["admin", "--json", "controller", "metadata", "--controllers", "10.1.1.3:1"], None, "10.1.1.3:1", True),
    (["admin", "--controllers", "10.1.1.4:1", "controller", "metadata", "--json"], None, "10.1.1.4:1", True),
])
def test_admin_connection_flags_work_before_or_after_the_command(argv, namesrv, controllers, as_json):
    a = build_parser().parse_args(argv)
    assert a.namesrv == (namesrv or os.environ.get("ORBITMQ_NAMESRV", "127.0.0.1:9876"))
    assert a.controllers == (controllers or os.environ.get("ORBITMQ_CONTROLLERS", "127.0.0.1:9878"))
    assert a.json is as_json
