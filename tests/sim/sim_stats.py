"""Totals of the simulator's runs in this process (printed at the end of the pytest session)."""

TOTALS = {"runs": 0, "events": 0, "faults": 0, "acked": 0, "seconds": 0.0}
