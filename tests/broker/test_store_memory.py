"""The store's resident memory: flushed commitlog pages older than the resident tail leave the
process's mappings (measured from /proc/self/smaps for the segment files), and reading them back
still returns every message intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from orbitmq.broker.store import GetStatus, Message, MessageStore, StoreConfig

MiB = 1 << 20
SEG = 16 * MiB


def mapped_rss(store_dir: Path) -> int:
    """Resident bytes of every mapping of a commitlog segment under `store_dir` in this process."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:   # a mapping's header line
            inside = len(head) >= 6 and head[5].startswith(str(store_dir))
        elif inside and line.startswith("Rss:"):
            total += int(head[1]) * 1024
    return total


def fill(s: MessageStore, mib: int) -> list[bytes]:
    body = b"y" * 8192
    sent = []
    for i in range(mib * MiB // (64 * 8192)):
        batch = [Message("T", b"%08d" % (i * 64 + j) + body) for j in range(64)]
        s.put_batch(batch)
        sent += [m.body for m in batch]
    return sent


@pytest.mark.parametrize("tail_mib, bounded", [(2, True), (1 << 20, False)])
def test_flushed_pages_leave_memory_and_read_back_intact(tmp_path, tail_mib, bounded):
    d = tmp_path / "s"
    s = MessageStore(StoreConfig(store_dir=str(d), segment_size=SEG, expiry_interval_s=0,
                                 resident_tail_bytes=tail_mib * MiB))
    s.open()
    try:
        sent = fill(s, 40)          # 40 MiB over three segments
        s.flusher.flush_now()
        rss = mapped_rss(d)
        if bounded:
            assert rss <= 6 * MiB, f"{rss / MiB:.1f} MiB of the log still resident"
        else:                       # without release every written page stays: the check above can fail
            assert rss >= 30 * MiB
        assert s.wait_dispatched(s.max_physical_offset, 30)
        got, off = [], 0
        while True:
            r = s.get_messages("T", 0, off, 256)
            if r.status != GetStatus.FOUND:
                break
            got += [m.body for m in r.messages]
            off = r.next_offset
        assert got == sent
        if bounded:                 # pages the reads faulted back are released again by the next sweep
            s.log.release_pages(s.flusher.flushed - s.config.resident_tail_bytes, now=1e12)
            assert mapped_rss(d) <= 6 * MiB
    finally:
        s.close()
