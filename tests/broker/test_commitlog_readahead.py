"""The commitlog's mappings read no further than they touch: a page fault on a segment brings in its
own page, not the kernel's read-around (up to read_ahead_kb, 8 MiB on some disks), which used to
zero-fill the unwritten rest of the active segment in the page cache ahead of the appends. Reads
of cold data ask for their own readahead, bounded by the written end. Real files, and the page
cache residency the kernel reports (mincore)."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

import pytest

from orbitmq.broker.store import Message, MessageStore, StoreConfig
from orbitmq.broker.store import commitlog as cl

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and smaps are Linux's")

SEG = 32 << 20


def _resident(path: str, start: int, length: int) -> int:
    """Pages of `path` in [start, start + length) that are in the page cache."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    page = mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = ctypes.create_string_buffer((length + page - 1) // page)
            assert libc.mincore(addr, length, vec) == 0, ctypes.get_errno()
            return sum(b & 1 for b in vec.raw)
        finally:
            libc.munmap(addr, length)
    finally:
        os.close(fd)


def _make(path) -> MessageStore:
    s = MessageStore(StoreConfig(store_dir=str(path), segment_size=SEG, expiry_interval_s=0))
    s.open()
    return s


def _vmflags(path: str) -> str:
    with open("/proc/self/smaps") as f:
        text = f.read()
    block = text[text.index(path):]
    return next(line for line in block.splitlines() if line.startswith("VmFlags:"))


def test_only_the_active_segment_is_mapped_without_readahead(tmp_path) -> None:
    s = MessageStore(StoreConfig(store_dir=str(tmp_path / "s"), segment_size=1 << 20, expiry_interval_s=0))
    s.open()
    try:
        first = s.log.segments[-1]
        assert " rr" in _vmflags(first.path)
        cut = s.put_batch([Message("T", b"r" * 60000, queue_id=0)] * 2)[1].physical_offset
        while len(s.log.segments) < 2:      # roll into a second segment
            s.put_batch([Message("T", b"r" * 60000, queue_id=0)])
        second = s.log.segments[-1]
        assert " rr" in _vmflags(second.path) and " rr" not in _vmflags(first.path)
        s.log.truncate(cut)   # (a failover's truncation back into the first segment)
        assert s.log.segments[-1] is first and first.active
        assert " rr" in _vmflags(first.path)
    finally:
        s.close()


def test_reading_the_log_back_leaves_the_unwritten_segment_out_of_the_page_cache(tmp_path) -> None:
    s = _make(tmp_path / "s")
    try:
        s.put_batch([Message("T", b"x" * 1000, queue_id=0) for _ in range(500)])
        assert s.wait_dispatched(s.max_physical_offset, 10)
        end = s.max_physical_offset
        path = s.log.segments[-1].path
    finally:
        s.close()
    # reopen: the recovery scan reads the log and the first zero bytes after it, then everything
    # is read back, as the dispatcher and a consumer would
    s = _make(tmp_path / "s")
    try:
        assert s.max_physical_offset == end
        got = sum(1 for _ in s.log.records(0))
        assert got == 500
        page = mmap.PAGESIZE
        past = (end + 2 * page) // page * page      # clear of the page holding the end
        unwritten = _resident(path, past, SEG - past)
        # the scan may ask the kernel for one READ_AHEAD window past the end; the kernel's
        # read-around would have filled up to read_ahead_kb around every fault
        assert unwritten * page <= cl.READ_AHEAD, f"{unwritten} pages past the end are cached"
    finally:
        s.close()


def test_a_cold_read_asks_for_its_window_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cl, "HOT_BYTES", 0)     # every read counts as cold
    s = _make(tmp_path / "s")
    try:
        s.put_batch([Message("T", b"y" * 4000, queue_id=0) for _ in range(2000)])   # ~8 MiB
        seg = s.log.segments[-1]
        asked: list[tuple[int, int]] = []
        real = cl.Segment.will_read

        def spy(self, rel: int, limit: int) -> None:
            asked.append((rel, limit))
            real(self, rel, limit)
        monkeypatch.setattr(cl.Segment, "will_read", spy)
        n = sum(1 for _ in s.log.records(0))
        assert n == 2000
        size = s.max_physical_offset
        # one window per READ_AHEAD / 2 of log read, each within the written log
        assert 1 <= len(asked) <= 2 * (size // cl.READ_AHEAD + 1), len(asked)
        assert all(limit <= size - seg.base for _, limit in asked)
        assert s.log.read_raw(0, 1 << 20)[:4] == s.log.segments[0].mm[:4]
    finally:
        s.close()


def test_after_a_restart_older_bytes_are_read_ahead_and_new_ones_are_not(tmp_path, monkeypatch) -> None:
    """Bytes found at open may not be in the page cache (a reboot): reads of them ask for windows
    even near the end; bytes this process appended since are read with no syscall of ours."""
    s = _make(tmp_path / "s")
    try:
        s.put_batch([Message("T", b"o" * 4000, queue_id=0) for _ in range(500)])   # ~2 MiB, well within HOT_BYTES
    finally:
        s.close()
    s = _make(tmp_path / "s")
    try:
        opened_end = s.max_physical_offset
        asked: list[int] = []
        real = cl.Segment.will_read

        def spy(self, rel: int, limit: int) -> None:
            asked.append(self.base + rel)
            real(self, rel, limit)
        monkeypatch.setattr(cl.Segment, "will_read", spy)
        assert sum(1 for _ in s.log.records(0)) == 500
        assert asked and all(p < opened_end for p in asked)
        asked.clear()
        s.put_batch([Message("T", b"n" * 4000, queue_id=0) for _ in range(500)])
        assert sum(1 for _ in s.log.records(opened_end)) == 500
        assert asked == []
    finally:
        s.close()
