"""The README's main job, `orbitmq demo`, run as a real process: it must fail over and lose nothing."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.process


def test_failover_demo_loses_no_acknowledged_message(tmp_path):
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "demo", "--dir", str(tmp_path / "c"),
                        "--kills", "1", "--warmup", "2"], capture_output=True, text=True, timeout=400)
    assert r.stdout.strip(), r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, (result, r.stderr[-3000:])
    assert result["ok"] is True
    assert result["lost_acked"] == 0
    assert result["acked"] > 100 and result["delivered"] >= result["acked"]
    assert result["epoch_conflicts"] == []
    assert len(result["kills"]) == 1 and result["kills"][0]["new_master"] != result["kills"][0]["killed"]
    assert result["failover_max_s"] < 30
