"""The README's main job, `orbitmq demo`, run as a real process: it must fail over after a kill and
after cutting the master off from the controllers, lose nothing, and draw its timeline."""

import json
import subprocess
import sys
from pathlib import Path

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
    assert result["kills"][0]["rejoined_as"].startswith("follower")       # not "?" any more
    (net,) = result["network_faults"]
    assert net["fault"] == "isolate_master_controllers" and net["new_master"] != net["isolated"]
    assert net["old_master_acked_for_s"] < 10 and net["rejoined_as"].startswith("follower")
    assert result["acks_by_deposed_master"] == 0
    assert Path(result["picture"]).stat().st_size > 10_000
    assert "timeline picture: " + result["picture"] in r.stdout          # says where the PNG is
