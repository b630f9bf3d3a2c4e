"""`orbitmq bench jetstream`: the side-by-side summary (pure) and the clear refusal when JetStream is
not installed (a real `orbitmq` process with a PATH that has no nats-server)."""

import json
import os
import subprocess
import sys

from orbitmq.bench.jetstream import MISSING, summary


def test_summary_takes_medians_pools_latencies_and_orients_ratios_so_one_means_par():
    out = summary({"orbitmq": [2000.0, 3000.0, 2500.0], "jetstream": [2000.0, 1000.0, 3000.0]},
                  {"orbitmq": [[1.0] * 98 + [5.0, 5.0], [2.0] * 100], "jetstream": [[0.5] * 200]})
    assert out["sync_rounds"] == [2000, 3000, 2500] and out["sync_send_per_s"] == 2500
    assert out["js_sync_send_per_s"] == 2000 and out["sync_vs_jetstream"] == 1.25      # OrbitMQ faster: > 1
    assert out["latency_samples"] == 200 and out["js_latency_samples"] == 200
    assert out["e2e_p50_ms"] == 2.0 and out["e2e_p99_ms"] == 2.0                         # pooled over rounds
    assert out["e2e_rounds_p50_p99_ms"] == [[1.0, 5.0], [2.0, 2.0]]
    assert out["e2e_p50_jetstream_over_orbitmq"] == 0.25                                 # OrbitMQ slower: < 1
    assert out["e2e_p99_jetstream_over_orbitmq"] == 0.25


def test_summary_without_latency_rounds_has_no_latency_keys():
    out = summary({"orbitmq": [100.0], "jetstream": [200.0]}, {"orbitmq": [], "jetstream": []})
    assert out["sync_vs_jetstream"] == 0.5
    assert not any("e2e" in k for k in out)


def test_without_nats_server_the_bench_says_what_to_install_and_fails():
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}     # python, but no nats-server
    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "bench", "jetstream", "--json", "--rounds", "1"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0
    assert MISSING in r.stderr and "apt-get install nats-server" in r.stderr
    assert not r.stdout.strip() or not json.loads(r.stdout.strip().splitlines()[-1]).get("sync_send_per_s")
