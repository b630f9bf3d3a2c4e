"""The simulator's modules live next to its tests (tests/sim/sim_*.py): make them importable, and
print how many runs, events and faults the simulator went through in this pytest session."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sim_stats import TOTALS  # noqa: E402 - needs the path above


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if TOTALS["runs"]:
        terminalreporter.write_line(
            f"simulator: {TOTALS['runs']} runs, {TOTALS['faults']} injected faults, {TOTALS['events']} events, "
            f"{TOTALS['acked']} acknowledged messages checked, {TOTALS['seconds']:.1f} s "
            f"({TOTALS['runs'] / max(TOTALS['seconds'], 1e-9) * 60:.0f} runs/min)")
