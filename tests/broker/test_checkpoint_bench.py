"""`orbitmq bench footprint` reports which recovery path each restart took (no speed is asserted):
after kill -9 a scan, after a clean stop the checkpoint, after a clean stop without it a scan."""

import json
import subprocess
import sys

import pytest


@pytest.mark.process
def test_footprint_bench_reports_the_recovery_path_of_each_restart():
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "bench", "footprint", "--json", "--gb", "0.01",
                        "--seconds", "60"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["restart_after_kill_path"] == "scan"
    assert out["restart_after_stop_path"] == "checkpoint"
    assert out["restart_after_stop_no_checkpoint_path"] == "scan"
    for key in ("restart_after_kill", "restart_after_stop", "restart_after_stop_no_checkpoint"):
        assert out[f"{key}_s"] > 0 and out[f"{key}_store_open_s"] >= out[f"{key}_log_end_s"] >= 0, key
    assert out["stop_s"] > 0 and out["written_mib_released"] >= 10
