"""`orbitmq bench store` runs end to end and reports consistent fields (no speed is asserted)."""

import json
import subprocess
import sys


def test_store_bench_prints_its_json_last(tmp_path):
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "bench", "store", "--json", "--messages", "3000",
                        "--size", "512", "--dir", str(tmp_path / "b"), "--seconds", "1", "--writers", "16"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ("append_msgs_per_s", "append_mb_per_s", "sync_append_msgs_per_s", "raw_write_mb_per_s",
              "raw_fsync_per_s", "append_vs_raw", "group_commit_gain"):
        assert out[k] > 0, k
    assert abs(out["append_vs_raw"] - out["append_mb_per_s"] / out["raw_write_mb_per_s"]) < 0.01
    assert abs(out["group_commit_gain"] - out["sync_append_msgs_per_s"] / out["raw_fsync_per_s"]) < 0.05
    assert not any((tmp_path / "b").iterdir())  # phases clean up after themselves
