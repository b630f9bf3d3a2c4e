"""OrbitMQ's own client in proxy mode (ProxyProducer / ProxyPushConsumer) against `orbitmq proxy`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process


def test_our_client_in_proxy_mode(start_proxy):
    ep = start_proxy("--auto-create-topics", "--group", "ours-g:fifo:max_attempts=5").addr
    script = Path(__file__).with_name("client_proxy_mode_scenario.py")
    r = subprocess.run([sys.executable, str(script), ep], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["receipts"] == 26
    assert out["empty_body_error"] == "MESSAGE_BODY_EMPTY" and out["bad_topic_error"] == "ILLEGAL_TOPIC"
    want = sorted([f"m{i}" for i in range(20)] + [f"b{i}" for i in range(5)] + ["async"] + [f"f{i}" for i in range(6)])
    assert out["bodies"] == want
    assert out["m3_redelivered"] and out["props_ok"]
    assert out["fifo_order"] == [f"f{i}" for i in range(6)]
