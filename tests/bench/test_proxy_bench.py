"""`orbitmq bench proxy` runs end to end and reports consistent fields (no speed is asserted)."""

import importlib.util
import json
import subprocess
import sys

import pytest


@pytest.mark.process
def test_proxy_bench_prints_its_json_last():
    if importlib.util.find_spec("rocketmq") is None:
        pytest.skip("the bench's official-client worker needs rocketmq-python-client ([test] extras)")
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "bench", "proxy", "--json", "--messages", "60",
                        "--size", "256", "--seconds", "60"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["lost"] == 0
    for path in ("direct", "proxy_official", "proxy_raw_protocol", "proxy_ours"):
        assert out[path]["sent"] == 60 and out[path]["send_msgs_per_s"] > 0, path
    d, o = out["direct"], out["proxy_official"]
    assert abs(out["proxy_vs_direct"] - o["send_msgs_per_s"] / d["send_msgs_per_s"]) < 0.01
    assert out["proxy_vs_direct_concurrent"] > 0 and out["ours_proxy_vs_direct"] > 0
