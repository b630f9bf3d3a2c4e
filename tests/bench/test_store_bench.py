"""`orbitmq bench store` runs end to end and reports consistent fields (no speed is asserted)."""

import json
import subprocess
import sys


def _within(ratio: float, num: float, den: float, half_step: float, ratio_half_step: float) -> bool:
    lo = (num - half_step) / (den + half_step)
    hi = (num + half_step) / max(den - half_step, 1e-9)
    return lo - ratio_half_step <= ratio <= hi + ratio_half_step


def test_store_bench_prints_its_json_last(tmp_path):
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "bench", "store", "--json", "--messages", "3000",
                        "--size", "512", "--dir", str(tmp_path / "b"), "--seconds", "1", "--writers", "16"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ("append_msgs_per_s", "append_mb_per_s", "sync_append_msgs_per_s", "raw_write_mb_per_s",
              "raw_fsync_per_s", "append_vs_raw", "group_commit_gain"):
        assert out[k] > 0, k
    # each ratio is computed before its parts are rounded (MB/s to 0.1, per-second counts to 1): it lies
    # within the ratios the rounded parts allow
    assert _within(out["append_vs_raw"], out["append_mb_per_s"], out["raw_write_mb_per_s"], 0.05, 0.0005)
    assert _within(out["group_commit_gain"], out["sync_append_msgs_per_s"], out["raw_fsync_per_s"], 0.5, 0.005)
    assert not any((tmp_path / "b").iterdir())  # phases clean up after themselves
