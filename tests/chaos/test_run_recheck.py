"""`orbitmq chaos check`: a recorded history.json is checked again offline, same figures."""

import json
import subprocess
import sys
from dataclasses import asdict

from orbitmq.chaos.checker import Delivery, FaultWindow, MasterChange, Send
from orbitmq.chaos.run import recheck


def write_history(d, sends, live, back, changes, faults):
    d.mkdir(parents=True, exist_ok=True)
    (d / "history.json").write_text(json.dumps({
        "schedule": [], "faults": [asdict(f) for f in faults], "events": [],
        "master_changes": [asdict(c) for c in changes], "broker_ids": {"m1": 1, "m2": 2},
        "min_offsets": {"broker-a/0": 0}, "sends": [asdict(s) for s in sends],
        "deliveries": [asdict(x) for x in live], "readback": [asdict(x) for x in back]}))


def test_a_recorded_lost_ack_is_found_again(tmp_path):
    sends = [Send(f"id{i}", 10.0 + i, 10.5 + i, True, "", 0, "broker-a", 0, i, 1, "m1") for i in range(5)]
    live = [Delivery(s.id, "broker-a", 0, s.queue_offset, 20.0) for s in sends]
    changes = [MasterChange("broker-a", 1, 1, 5.0)]
    faults = [FaultWindow("kill_master", 12.2, 14.0, ("broker-a-1",))]
    write_history(tmp_path / "ok", sends, live, live, changes, faults)
    r = recheck(tmp_path / "ok")
    assert r["ok"] and r["lost_acked"] == 0 and r["faults_injected"] == 1
    assert r["unavailable_by_kind"]["kill_master"]["count"] == 1
    write_history(tmp_path / "bad", sends, live, live[:3], changes, faults)
    assert recheck(tmp_path / "bad")["lost_acked"] == 2
    out = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "chaos", "check", "--dir", str(tmp_path / "bad"),
                          "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert json.loads(out.stdout.strip().splitlines()[-1])["lost_acked"] == 2


def test_a_missing_history_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "chaos", "check", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "history.json" in out.stderr
