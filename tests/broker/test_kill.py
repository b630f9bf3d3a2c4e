"""A real writer process is SIGKILLed in the middle of appends; every flushed append survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orbitmq.broker.store import GetStatus, MessageStore, StoreConfig

HELPER = Path(__file__).with_name("kill_writer.py")
SEG = 256 * 1024


def run_and_kill(store_dir: Path, mode: str, min_acks: int) -> list[tuple[int, int, int, int, str]]:
    # stderr goes to a file: reading a live child's pipe to EOF here would deadlock with its stdout
    err_path = store_dir.parent / f"kill_writer-{mode}.err"
    with open(err_path, "ab") as err:
        p = subprocess.Popen([sys.executable, str(HELPER), str(store_dir), str(SEG), mode],
                             stdout=subprocess.PIPE, stderr=err, text=True)
    acks: list[tuple[int, int, int, int, str]] = []
    try:
        first = p.stdout.readline().strip()
        assert first == "READY", (first, err_path.read_text())
        done = threading.Event()

        def reader() -> None:
            for line in p.stdout:
                parts = line.split()
                if len(parts) == 6 and parts[0] == "ACK":
                    acks.append((int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4]), parts[5]))
            done.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        deadline = time.monotonic() + 60
        while len(acks) < min_acks and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.01)
        assert p.poll() is None, err_path.read_text()
        os.kill(p.pid, signal.SIGKILL)  # in the middle of appends from four threads
        p.wait(10)
        done.wait(10)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
    assert len(acks) >= min_acks
    return acks


@pytest.mark.process
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sigkill_mid_append_loses_no_flushed_record(tmp_path, mode: str) -> None:
    d = tmp_path / "store"
    acks = run_and_kill(d, mode, 1500)
    acks += run_and_kill(d, mode, 500)  # a second life on the recovered store, killed again
    s = MessageStore(StoreConfig(store_dir=str(d), segment_size=SEG, expiry_interval_s=0))
    s.open()
    try:
        assert s.verify() == []  # nothing corrupt anywhere in the log
        assert len(s.log.segments) > 2
        for phys, end, _qid, _qoff, tag in acks:
            m = s.get_by_physical_offset(phys)
            assert m is not None and m.physical_offset == phys and m.size == end - phys
            prefix, _, length = tag.rpartition("-")
            assert m.body.startswith(prefix.encode() + b"-") and len(m.body) == int(length)
        assert s.wait_dispatched(s.max_physical_offset, 30)
        # every queue is gap-free and holds each acknowledged message at its acknowledged offset
        for q in range(4):
            got = {}
            off = 0
            while True:
                r = s.get_messages("Kill", q, off, 256, 1 << 24)
                if r.status != GetStatus.FOUND:
                    break
                for m in r.messages:
                    got[m.queue_offset] = m.physical_offset
                off = r.next_offset
            assert sorted(got) == list(range(s.max_offset("Kill", q)))
            for phys, _end, qid, qoff, _tag in acks:
                if qid == q:
                    assert got[qoff] == phys
    finally:
        s.close()
