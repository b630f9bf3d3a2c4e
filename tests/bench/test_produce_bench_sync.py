"""`orbitmq bench produce --only sync|sync-framed` runs only the sync-send phase, end to end against
real processes, and reports every round (no speed is asserted)."""

import json
import subprocess
import sys


def _run(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "bench", "produce", "--json", "--messages", "300",
                        "--seconds", "0.6", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_only_sync_framed_reports_each_round_and_nothing_else():
    out = _run("--only", "sync-framed", "--sync-rounds", "3")
    rounds = out["sync_rounds"]
    assert len(rounds) == 3 and all(len(r) == 3 and r[0] > 0 and r[1] > 0 and r[2] >= 0 for r in rounds)
    best = max(rounds, key=lambda r: r[0])
    assert [out["sync_send_per_s"], out["sync_client_cpu_us"], out["sync_broker_cpu_us"]] == best
    assert not any(k.startswith("grpc_") for k in out)          # framed only
    assert "async_msgs_per_s" not in out and "e2e_p99_ms" not in out and "send_vs_grpc" not in out
    raw = out["raw_roundtrip_rounds"]      # the bare-socket ceiling before each framed round
    assert len(raw) == 3 and all(r > 0 for r in raw) and out["raw_roundtrip_per_s"] == max(raw)
    assert out["sync_vs_raw"] == round(out["sync_send_per_s"] / out["raw_roundtrip_per_s"], 3)


def test_only_sync_alternates_framed_and_grpc():
    out = _run("--only", "sync", "--sync-rounds", "1")
    assert len(out["sync_rounds"]) == 1 and len(out["grpc_sync_rounds"]) == 1
    assert out["grpc_sync_send_per_s"] > 0 and out["sync_send_per_s"] > 0
    assert out["framed_vs_grpc_sync"] == round(out["sync_send_per_s"] / out["grpc_sync_send_per_s"], 2)
    assert "batch_msgs_per_s" not in out
