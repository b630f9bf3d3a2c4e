"""The fuzzers' helpers live next to their tests (tests/security/fuzzing.py): make them importable,
and print how many inputs each fuzz target was given in this pytest session."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fuzzing import COUNTS, OUTCOMES  # noqa: E402 - needs the path above


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if COUNTS:
        terminalreporter.write_line(f"fuzz: {sum(COUNTS.values())} inputs over {len(COUNTS)} targets; "
                                    f"answers {dict(sorted(OUTCOMES.items()))}")
        for target, n in sorted(COUNTS.items()):
            terminalreporter.write_line(f"  {target}: {n}")
