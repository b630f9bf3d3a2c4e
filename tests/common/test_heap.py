"""common/heap.py: freed buffers of a few hundred KiB are reused instead of page-faulting afresh
(each measured in its own interpreter, since the setting is process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orbitmq.common.heap import keep_freed_heap

PROBE = """
import resource, sys
from orbitmq.common.heap import keep_freed_heap
on = keep_freed_heap(int(sys.argv[1]))
def churn():
    for _ in range(200):       # what one large request costs a broker: a few buffers, freed together
        a = bytearray(300_000); b = bytes(a); c = bytearray(b) + b"x"; del a, b, c
churn()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(on, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _probe(keep: int, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(keep)], capture_output=True, text=True, timeout=60,
                         env=env, check=True).stdout.split()
    return out[0], int(out[1])


def test_off_and_overridden_leave_malloc_alone(monkeypatch):
    assert keep_freed_heap(0) is False
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert keep_freed_heap(64 << 20) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_kept_heap_stops_the_page_faults_of_large_buffers():
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    on, faults_on = _probe(64 << 20, env)
    off, faults_off = _probe(0, env)
    assert (on, off) == ("True", "False")
    # default malloc: every round maps (or trims and regrows) fresh pages, ~70 faults per buffer
    assert faults_off > 10_000
    assert faults_on < faults_off / 20
