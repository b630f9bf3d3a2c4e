"""Dependency direction: the pure cores import only pure modules (no sockets, threads, asyncio,
gRPC, files or clocks), checked in a fresh interpreter per module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE = [
    "orbitmq.broker.ha.epochs", "orbitmq.broker.ha.epoch_truncation", "orbitmq.broker.ha.protocol",
    "orbitmq.broker.ha.connection", "orbitmq.broker.ha.roles", "orbitmq.broker.ha.sync_state",
    "orbitmq.broker.ha.ack_policy", "orbitmq.controller.state", "orbitmq.controller.election",
    "orbitmq.controller.liveness", "orbitmq.controller.leader_scan", "orbitmq.controller.refusals",
    "orbitmq.broker.ha.replica_store", "orbitmq.broker.ha.hello_check", "orbitmq.common.node_auth",
    "orbitmq.common.limits", "orbitmq.common.acl", "orbitmq.controller.auth_state",
]
FORBIDDEN = {"asyncio", "socket", "threading", "grpc", "time", "random", "orbitmq.broker.ha.epoch_file",
             "orbitmq.broker.store", "orbitmq.common.durable"}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_nothing_impure(module):
    code = (f"import sys; before = set(sys.modules); import {module}; "
            "import json; print(json.dumps(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout))
    assert not loaded & FORBIDDEN, f"{module} pulls in {sorted(loaded & FORBIDDEN)}"
    impure = sorted(m for m in loaded if m.startswith("orbitmq.") and m not in PURE
                    and m not in {"orbitmq", "orbitmq.broker", "orbitmq.broker.ha", "orbitmq.controller",
                                 "orbitmq.common", "orbitmq.common.lazy_exports"})
    assert not impure, f"{module} imports non-pure OrbitMQ modules {impure}"
