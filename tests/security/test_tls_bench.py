"""`orbitmq bench produce --tls --json` end to end (short): both modes measured in one run and the
ratios present (no speed asserted: figures go in the README)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.process


def test_bench_produce_tls_reports_both_modes_side_by_side():
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "bench", "produce", "--tls", "--json",
                        "--seconds", "0.5", "--rounds", "1", "--messages", "3000", "--batch", "32"],
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for mode in ("plain", "tls"):
        m = out[mode]
        assert m["sync_send_per_s"] > 0 and m["async_msgs_per_s"] > 0 and m["batch_msgs_per_s"] > 0
        assert m["async_failed"] == 0 and m["first_send_ms"] > 0 and m["sync_cpu_us_per_msg"] > 0
    for key in ("secure_vs_plain", "secure_vs_plain_async", "secure_vs_plain_batch", "secure_vs_plain_cpu"):
        assert out[key] > 0


def test_bench_produce_tls_auth_measures_the_fully_secured_path_against_plaintext():
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "bench", "produce", "--tls", "--auth", "--json",
                        "--seconds", "0.5", "--rounds", "1", "--messages", "2000", "--batch", "32"],
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for mode in ("plain", "secure"):
        assert out[f"{mode}_sync_send_per_s"] > 0 and out[f"{mode}_batch_msgs_per_s"] > 0
        assert out[f"{mode}_sync_cpu_us_per_msg"] > 0
    for key in ("secure_vs_plain", "secure_vs_plain_batch", "secure_vs_plain_cpu", "secure_vs_plain_cpu_batch"):
        assert out[key] > 0
