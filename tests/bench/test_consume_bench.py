"""`orbitmq bench consume --groups` runs end to end and reports consistent fields (no speed is asserted)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.process
def test_consume_bench_with_groups_prints_its_json_last():
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "bench", "consume", "--json", "--messages", "1500",
                        "--size", "256", "--seconds", "60", "--groups", "2"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["protocol"] == "framed"
    assert out["pull_consumed"] == out["push_consumed"] == 1500
    one, many = out["one_group"], out["many_groups"]
    assert (one["groups"], one["delivered"]) == (1, 1500)      # every group reads every message
    assert (many["groups"], many["delivered"]) == (2, 3000)
    for g in (one, many):
        assert g["deliveries_per_s"] > 0 and g["broker_cpu_us_per_delivery"] >= 0
    assert out["groups_vs_one"] == round(many["deliveries_per_s"] / one["deliveries_per_s"], 3)
