"""Every `orbitmq` subcommand answers --help (each explains itself)."""

import subprocess
import sys

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
    for cmd in cmds:
        r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", *cmd, "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (cmd, r.stderr)
        assert "usage:" in r.stdout
