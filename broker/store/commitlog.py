"""The commitlog: segmented, preallocated, mmap'd append-only files of records (see record.py).

Owns: segment files (`<dir>/<20-digit base offset>`, each ftruncated to the segment size so
unwritten bytes read as zero = end of data), positioning records so none spans a segment (a BLANK
record pads the end), recovery of the end of data after a crash (torn tail cut, mid-segment
corruption reported), reads by physical offset, raw copies, truncation and whole-segment deletion.
It never fsyncs on the append path (flush.py does) and takes no lock of its own: the store
serialises appends, truncation and deletion; reads may run concurrently with appends.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import mmap
import os
from collections.abc import Callable, Iterator

from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store import record as rc
from orbitmq.broker.store.errors import CorruptRecord, MessageTooLarge, OffsetMismatch

log = logging.getLogger("orbitmq.broker.store.commitlog")


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


READ_AHEAD = 1 << 20   # bytes of the log a read of cold data asks the kernel for at once
HOT_BYTES = 64 << 20   # a read this close to the end, of bytes this process appended, finds them in the page cache


class Segment:
    """One preallocated file mapped in memory; `base` is the physical offset of its first byte.

    The active (last) segment's mapping is MADV_RANDOM: a page fault reads only its own page.
    Otherwise the kernel reads around a faulting page (read_ahead_kb, 8 MiB on some disks) and,
    once that began, ahead of every page it marked: in the active segment that zero-fills its
    unwritten rest in the page cache ahead of the appends, which doubled the broker's work per
    byte appended whenever it happened. Its reads of cold data (after a restart) ask for their
    own readahead (`will_read`), bounded by the written end. A full segment is all data: it gets
    the kernel's readahead back (`set_active(False)`)."""

    __slots__ = ("path", "base", "size", "end", "fd", "mm", "active", "ahead_lo", "ahead_hi")

    def __init__(self, path: str, base: int, size: int, create: bool) -> None:
        self.path = path
        self.base = base
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        try:
            if create:
                os.ftruncate(fd, size)
                os.fsync(fd)
            else:
                size = os.fstat(fd).st_size
            self.mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.size = size
        self.end = base + size
        self.active = False
        self.ahead_lo = self.ahead_hi = 0   # the range [lo, hi) (relative) last asked for by will_read

    def set_active(self, active: bool) -> None:
        """Appends go here (no readahead on faults) or no longer (the kernel's readahead)."""
        self.active = active
        if hasattr(mmap, "MADV_RANDOM"):
            with contextlib.suppress(ValueError, OSError):   # closed under us: nothing to advise
                self.mm.madvise(mmap.MADV_RANDOM if active else mmap.MADV_NORMAL)

    def asked(self, rel: int, limit: int) -> bool:
        """Whether the window last asked for covers a read from `rel` well enough (half of it still
        ahead, or all up to `limit`)."""
        return self.ahead_lo <= rel and (rel < self.ahead_hi - READ_AHEAD // 2 or self.ahead_hi >= limit)

    def will_read(self, rel: int, limit: int) -> None:
        """About to read from `rel` on, `limit` being the segment's written end: ask the kernel to
        read up to READ_AHEAD bytes from there (once per window; CommitLog._will_read decides)."""
        lo = rel - rel % mmap.PAGESIZE
        hi = min(limit, rel + READ_AHEAD)
        if hi <= lo:
            return
        try:
            self.mm.madvise(mmap.MADV_WILLNEED, lo, hi - lo)
        except (ValueError, OSError):
            return   # closed or remapped under us: the read itself reports it
        self.ahead_lo, self.ahead_hi = lo, hi

    def close(self) -> None:
        try:
            self.mm.close()
        finally:
            os.close(self.fd)

    def cut(self, rel: int) -> None:
        """Zero everything from `rel` to the end (sparse: shrink then re-extend) and fsync."""
        self.mm.flush()
        self.mm.close()
        os.ftruncate(self.fd, rel)
        os.ftruncate(self.fd, self.size)
        os.fsync(self.fd)
        self.mm = mmap.mmap(self.fd, self.size)
        self.ahead_lo = self.ahead_hi = 0
        if self.active:
            self.set_active(True)


class CommitLog:
    """Segments in `directory`; `max_offset` is the end of valid data."""

    def __init__(self, directory: str, segment_size: int) -> None:
        if segment_size < 4096:
            raise ValueError("segment_size must be at least 4096 bytes")
        self.dir = directory
        self.segment_size = segment_size
        self.segments: list[Segment] = []
        self._bases: list[int] = []
        self.max_offset = 0
        self._released = 0        # release_pages: bytes before this were advised away already
        self._last_sweep = 0.0
        self._appended_from = 0   # bytes from here on were appended by this process (in the page cache)

    # ---- open / recovery ------------------------------------------------------------------------

    def open(self) -> None:
        """Map every segment and find the end of data: cut a torn tail, raise on mid-log corruption."""
        self.map_segments()
        self.recover_end()

    def map_segments(self) -> None:
        """Map every segment file (checking they follow each other), without looking inside them;
        `recover_end()` (scan) or `resume_at()` (a trusted clean-shutdown checkpoint) comes next."""
        os.makedirs(self.dir, exist_ok=True)
        names = sorted(n for n in os.listdir(self.dir) if n.isdigit() and len(n) == 20)
        for i, n in enumerate(names):
            path = os.path.join(self.dir, n)
            if os.path.getsize(path) == 0:
                if i == len(names) - 1:   # a crash between creating the last segment and sizing it
                    log.warning("removing empty last segment file %s (never written)", path)
                    os.unlink(path)
                    fsync_dir(self.dir)
                    break
                self.close()
                raise CorruptRecord(path, int(n), "segment file is empty but later segments exist")
            seg = Segment(path, int(n), 0, create=False)
            if self.segments and seg.base != self.segments[-1].end:
                seg.close()
                self.close()
                raise CorruptRecord(os.path.join(self.dir, n), int(n),
                                    "segment does not start where the previous one ends")
            self.segments.append(seg)
        self._bases = [s.base for s in self.segments]
        self._advise()

    def recover_end(self) -> None:
        """Find the end of data by scanning the last segment: cut a torn tail, raise on corruption
        followed by valid records (an empty directory becomes a log with one segment at 0)."""
        if not self.segments:
            self._new_segment(0)
            self.max_offset = self._appended_from = 0
            return
        # an empty last segment (crash right after a rollover) is dropped; scan the one before it
        while True:
            last = self.segments[-1]
            end = self._recover_segment(last)
            if end == last.base and len(self.segments) > 1:
                prev = self.segments[-2]
                if self._segment_is_full(prev):
                    break
                log.warning("dropping empty last segment %s (previous segment not closed by a blank)", last.path)
                self._drop_last()
                continue
            break
        self.max_offset = self._appended_from = end
        if end == self.segments[-1].end:
            # the last segment is complete (closed by its blank) and the next one was never created
            # (or was an empty file, removed above): appends go to a fresh segment
            self._new_segment(end)

    def resume_at(self, end: int) -> None:
        """Take `end` as the end of data without scanning (the store's trusted clean-shutdown
        checkpoint vouches for it); a complete last segment gets its successor as after a scan."""
        last = self.segments[-1] if self.segments else None
        if last is None or not last.base <= end <= last.end:
            raise ValueError(f"end {end} is not inside the last segment")
        self.max_offset = self._appended_from = end
        if end == last.end:
            self._new_segment(end)

    def _segment_is_full(self, seg: Segment) -> bool:
        try:
            return self._recover_segment(seg, cut=False) == seg.end
        except CorruptRecord:
            return False

    def _recover_segment(self, seg: Segment, cut: bool = True) -> int:
        """Scan a segment from its start; returns the end of valid data (cuts a torn tail)."""
        mm = seg.mm
        pos = 0
        limit = seg.size
        while pos < limit:
            if seg.active and not seg.asked(pos, limit):
                seg.will_read(pos, limit)   # (the end is not known yet: read ahead in windows)
            if limit - pos < rc.BLANK_MIN or rc.peek_size(mm, pos) == 0:
                if limit - pos >= 4 and mm[pos:pos + 4] != b"\0\0\0\0":
                    return self._torn(seg, pos, "crc set but size zero", cut)
                return seg.base + pos
            try:
                total, _ = rc.check(mm, pos, limit, expect_offset=seg.base + pos)
            except rc.CodecError as e:
                # torn tail or mid-log corruption? a valid record right after says "corruption"
                size = rc.peek_size(mm, pos)
                nxt = pos + size
                if rc.HEADER_SIZE <= size and nxt + rc.BLANK_MIN <= limit:
                    try:
                        rc.check(mm, nxt, limit, expect_offset=seg.base + nxt)
                    except rc.CodecError:
                        pass
                    else:
                        raise CorruptRecord(seg.path, seg.base + pos, f"{e.reason} (valid records follow)") from None
                # the size field itself may be damaged: look further for any valid record (its stored
                # physical offset must match where it lies) before calling this a torn tail
                later = self._valid_record_after(seg, pos + 1, limit)
                if later is not None:
                    raise CorruptRecord(seg.path, seg.base + pos,
                                        f"{e.reason} (a valid record follows at {seg.base + later})") from None
                return self._torn(seg, pos, e.reason, cut)
            pos += total
        return seg.base + pos

    @staticmethod
    def _valid_record_after(seg: Segment, start: int, limit: int) -> int | None:
        """The position of a valid message or META record in seg[start:limit], if any."""
        mm = seg.mm
        for magic in (rc.MAGIC_MESSAGE, rc.MAGIC_META):
            needle = magic.to_bytes(4, "little")
            at = mm.find(needle, start + 8, limit)
            while at != -1:
                q = at - 8
                try:
                    rc.check(mm, q, limit, expect_offset=seg.base + q)
                    return q
                except rc.CodecError:
                    at = mm.find(needle, at + 1, limit)
        return None

    def _torn(self, seg: Segment, pos: int, reason: str, cut: bool) -> int:
        if cut:
            log.warning("cutting torn tail of %s at offset %d: %s", seg.path, seg.base + pos, reason)
            seg.cut(pos)
        return seg.base + pos

    def _new_segment(self, base: int) -> Segment:
        seg = Segment(os.path.join(self.dir, f"{base:020d}"), base, self.segment_size, create=True)
        fsync_dir(self.dir)
        self.segments.append(seg)
        self._bases.append(base)
        self._advise()
        return seg

    def _drop_last(self) -> None:
        seg = self.segments.pop()
        self._bases.pop()
        seg.close()
        os.unlink(seg.path)
        fsync_dir(self.dir)
        self._advise()

    def _advise(self) -> None:
        """Only the last segment, where appends go, is mapped without readahead (see Segment)."""
        segs = self.segments
        if len(segs) > 1 and segs[-2].active:
            segs[-2].set_active(False)
        if segs and not segs[-1].active:
            segs[-1].set_active(True)

    def close(self) -> None:
        for s in self.segments:
            s.close()
        self.segments = []
        self._bases = []

    # ---- appends (caller holds the store's append lock) -----------------------------------------

    @property
    def min_offset(self) -> int:
        return self.segments[0].base if self.segments else 0

    def room(self) -> int:
        """Bytes a record (or batch) may still take in the active segment."""
        return self.segments[-1].end - rc.BLANK_MIN - self.max_offset

    def reserve(self, n: int) -> int:
        """The position where `n` contiguous bytes go (rolls to a new segment if they do not fit)."""
        seg = self.segments[-1]
        pos = self.max_offset
        if pos + n <= seg.end - rc.BLANK_MIN:
            return pos
        if n > self.segment_size - rc.BLANK_MIN:
            raise MessageTooLarge(f"{n} bytes do not fit a segment of {self.segment_size} bytes")
        if pos == seg.end:   # complete already (its blank written): nothing to close
            self._new_segment(seg.end)
            return self.max_offset
        blank = rc.encode_blank(seg.end - pos)
        seg.mm[pos - seg.base:] = blank
        self.max_offset = seg.end
        self._new_segment(seg.end)
        return self.max_offset

    def write(self, pos: int, data) -> None:
        """Copy `data` to `pos` (== max_offset, reserved) and advance the end."""
        seg = self.segments[-1]
        rel = pos - seg.base
        seg.mm[rel:rel + len(data)] = data
        self.max_offset = pos + len(data)

    def write_parts(self, pos: int, parts: list) -> None:
        """Copy the byte strings `parts` one after another to `pos` (== max_offset, reserved for
        their total) and advance the end once, so no reader sees a part of a record."""
        seg = self.segments[-1]
        rel = pos - seg.base
        # pwritev, not the mapping: one syscall that lets go of the GIL and takes no page faults;
        # the shared mapping sees the same page cache at once
        n = os.pwritev(seg.fd, parts, rel)
        if n != sum(len(p) for p in parts):
            raise OSError(f"short write to {seg.path}: {n} bytes")
        self.max_offset = pos + n

    def append_raw(self, start: int, data: bytes) -> list[tuple[int, int, int]]:
        """Validate whole records (CRC, offsets, segment fit) and append them as-is.

        Returns [(physical_offset, size, magic)] of every record. Raises OffsetMismatch when
        `start` is not the end of the log or records do not land where they say, CorruptRecord when
        a record is damaged; nothing is written then.
        """
        if start != self.max_offset:
            raise OffsetMismatch(self.max_offset, start, "append_raw start")
        out = []
        pos = 0
        n = len(data)
        seg_end = self.segments[-1].end
        while pos < n:
            at = start + pos
            try:
                total, magic = rc.check(data, pos, n, expect_offset=at)
            except rc.CodecError as e:
                raise CorruptRecord("<replicated data>", at, e.reason) from None
            if magic == rc.MAGIC_BLANK:
                if at + total != seg_end:
                    raise OffsetMismatch(seg_end, at + total, "blank padding end (segment sizes differ?)")
                seg_end += self.segment_size
            elif at + total > seg_end - rc.BLANK_MIN:
                raise OffsetMismatch(seg_end - rc.BLANK_MIN, at + total, "record end beyond the segment (sizes differ?)")
            out.append((at, total, magic))
            pos += total
        # copy runs of records that share a segment in one slice each (a blank ends a segment)
        mv = memoryview(data)
        run = 0  # start in `data` of the run not yet copied
        for i, (at, total, magic) in enumerate(out):
            end = at + total - start
            if magic == rc.MAGIC_BLANK or i == len(out) - 1:
                seg = self.segments[-1]
                rel = start + run - seg.base
                seg.mm[rel:rel + end - run] = mv[run:end]
                self.max_offset = start + end
                run = end
                if magic == rc.MAGIC_BLANK:
                    self._new_segment(seg.end)
        return out

    # ---- reads (any thread) -----------------------------------------------------------------------

    def prefix_at(self, pos: int) -> tuple[int, int, int] | None:
        """(crc, total size, magic) stored at `pos`, unchecked; None outside the written log."""
        if not self.min_offset <= pos < self.max_offset:
            return None
        seg = self._segment(pos)
        rel = pos - seg.base
        if min(seg.size, self.max_offset - seg.base) - rel < rc.BLANK_MIN:
            return None
        return rc.peek_prefix(seg.mm, rel)

    def _will_read(self, seg: Segment, rel: int, limit: int) -> None:
        """A read of `seg` from `rel` (up to `limit`, relative) is coming: unless its window was
        asked for already or the data was just appended (by this process, within HOT_BYTES of
        the end), have the kernel read ahead of it."""
        pos = seg.base + rel
        if not seg.active or (pos >= self._appended_from and self.max_offset - pos < HOT_BYTES) or \
                seg.asked(rel, limit):
            return   # (a full segment has the kernel's readahead)
        seg.will_read(rel, limit)

    def _segment(self, pos: int) -> Segment:
        i = bisect.bisect_right(self._bases, pos) - 1
        if i < 0:
            raise IndexError(pos)
        return self.segments[i]

    def is_boundary(self, pos: int) -> bool:
        """Whether `pos` is where a record starts (or the log's start or end): a safe cut point."""
        if pos in (self.min_offset, self.max_offset) or pos in self._bases:
            return True
        if not self.min_offset < pos < self.max_offset:
            return False
        seg = self._segment(pos)
        try:
            rc.check(seg.mm, pos - seg.base, seg.size, expect_offset=pos)
        except rc.CodecError:
            return False
        return True

    def read_record(self, pos: int) -> rc.Message:
        """The verified one-message (or META) record at `pos`; CorruptRecord if its CRC/size/offset
        is wrong (or if it is a batch: read_verified gives its bytes)."""
        magic, buf = self.read_verified(pos)
        try:
            return rc.decode(buf, 0, len(buf), verify=False)
        except rc.CodecError as e:
            raise CorruptRecord(self._segment(pos).path, pos, e.reason) from None

    def read_verified(self, pos: int) -> tuple[int, bytes]:
        """(magic, bytes) of the verified record at `pos`; CorruptRecord if its CRC/size/offset is wrong."""
        if not self.min_offset <= pos < self.max_offset:
            raise IndexError(f"offset {pos} outside [{self.min_offset}, {self.max_offset})")
        seg = self._segment(pos)
        rel = pos - seg.base
        limit = min(seg.size, self.max_offset - seg.base)
        self._will_read(seg, rel, limit)
        try:
            total = rc.peek_size(seg.mm, rel)
            if total < rc.BLANK_MIN or rel + total > limit:
                raise rc.CodecError(f"size {total} out of range")
            buf = seg.mm[rel:rel + total]
            _, magic = rc.check(buf, 0, total, expect_offset=pos)
            return magic, buf
        except rc.CodecError as e:
            raise CorruptRecord(seg.path, pos, e.reason) from None

    def records(self, start: int, end: int | None = None,
                on_corrupt: Callable[[CorruptRecord], None] | None = None,
                batch_meta: bool = False) -> Iterator[tuple[int, int, bytes]]:
        """Yield (offset, magic, record bytes) of verified records from start to end (blanks too).

        A corrupt record raises CorruptRecord; with `on_corrupt`, one whose size field still leads
        to a valid record (or the end) is reported to it and skipped instead. With `batch_meta`, a
        batch record yields only its header, tables and columns (their CRC checked; the message
        data is neither copied nor checked: indexing needs none of it, readers check it).
        """
        pos = start
        while True:
            stop = self.max_offset if end is None else min(end, self.max_offset)
            if pos >= stop:
                return
            seg = self._segment(pos)
            rel = pos - seg.base
            limit = min(seg.size, self.max_offset - seg.base)
            self._will_read(seg, rel, limit)
            total = rc.peek_size(seg.mm, rel) if limit - rel >= rc.BLANK_MIN else 0
            if total < rc.BLANK_MIN or rel + total > limit:
                raise CorruptRecord(seg.path, pos, f"bad size {total}")
            if pos + total > stop:
                return  # the record straddles `end`: stop before it
            if batch_meta and total >= br.HEADER_SIZE and rc.peek_magic(seg.mm, rel) == rc.MAGIC_BATCH:
                meta = br.meta_len_of(seg.mm, rel)
                if br.HEADER_SIZE <= meta <= total:
                    buf = seg.mm[rel:rel + meta]
                    try:
                        br.check_meta(buf, total, pos)
                    except rc.CodecError as e:
                        err = CorruptRecord(seg.path, pos, e.reason)
                        if on_corrupt is None or not self._resyncs(seg, rel + total, limit):
                            raise err from None
                        on_corrupt(err)
                        pos += total
                        continue
                    yield pos, rc.MAGIC_BATCH, buf
                    pos += total
                    continue
            buf = seg.mm[rel:rel + total]
            try:
                _, magic = rc.check(buf, 0, total, expect_offset=pos)
            except rc.CodecError as e:
                err = CorruptRecord(seg.path, pos, e.reason)
                if on_corrupt is None or not self._resyncs(seg, rel + total, limit):
                    raise err from None
                on_corrupt(err)
                pos += total
                continue
            yield pos, magic, buf
            pos += total

    @staticmethod
    def _resyncs(seg: Segment, rel: int, limit: int) -> bool:
        if rel == limit or rel == seg.size:
            return True
        try:
            rc.check(seg.mm, rel, limit, expect_offset=seg.base + rel)
            return True
        except rc.CodecError:
            return False

    def read_raw(self, start: int, max_bytes: int) -> bytes:
        """Whole records from `start` totalling at most max_bytes (b"" if the first is larger)."""
        if start >= self.max_offset or max_bytes <= 0:
            return b""
        if start < self.min_offset:
            raise IndexError(f"offset {start} below the log start {self.min_offset}")
        parts = []
        got = 0
        pos = start
        end = self.max_offset
        while pos < end:
            seg = self._segment(pos)
            rel = pos - seg.base
            seg_stop = min(seg.size, end - seg.base)
            self._will_read(seg, rel, seg_stop)
            r = rel
            while r < seg_stop:
                total = rc.peek_size(seg.mm, r)
                if total < rc.BLANK_MIN or r + total > seg_stop:
                    raise CorruptRecord(seg.path, seg.base + r, f"bad size {total}")
                if got + (r - rel) + total > max_bytes:
                    break
                r += total
            if r > rel:
                parts.append(seg.mm[rel:r])
                got += r - rel
            if r < seg_stop or r < seg.size:
                break
            pos = seg.base + r
        return b"".join(parts)

    # ---- truncation and deletion --------------------------------------------------------------------

    def truncate(self, offset: int) -> None:
        """Cut everything at and after `offset` (a record boundary), durably."""
        if offset >= self.max_offset:
            return
        if offset < self.min_offset:
            offset = self.min_offset
        while len(self.segments) > 1 and self.segments[-1].base > offset:
            self._drop_last()
        if self.segments[-1].base == offset and len(self.segments) > 1:
            # the previous segment ends with a blank; keep it and an empty segment starting here
            pass
        seg = self.segments[-1]
        seg.cut(offset - seg.base)
        self.max_offset = offset
        self._appended_from = min(self._appended_from, offset)
        self._released = min(self._released, offset)
        fsync_dir(self.dir)

    def start_at(self, offset: int) -> None:
        """Drop every segment and continue as an empty log whose first record goes at `offset`
        (a replica joining a master whose older segments expired). Durable: the old segments are
        unlinked first, so a crash leaves either some of them (the caller finishes the job) or
        none (an empty log at 0) or the new empty segment, never a gap between files."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        while self.segments:
            seg = self.segments.pop()
            self._bases.pop()
            seg.close()
            os.unlink(seg.path)
        fsync_dir(self.dir)
        self._new_segment(offset)
        self.max_offset = self._appended_from = offset
        self._released = offset   # release_pages: nothing below the new start is mapped

    def delete_oldest(self) -> Segment | None:
        """Delete the oldest segment (never the active one); returns it (closed) or None."""
        if len(self.segments) < 2:
            return None
        seg = self.segments.pop(0)
        self._bases.pop(0)
        seg.close()
        os.unlink(seg.path)
        fsync_dir(self.dir)
        return seg

    def segment_files(self) -> list[tuple[str, int, int]]:
        """[(path, base, end)] of every segment, oldest first."""
        return [(s.path, s.base, s.end) for s in self.segments]

    def release_pages(self, upto: int, now: float, sweep_every_s: float = 5.0) -> int:
        """Drop this process's mappings of the bytes before `upto` (flushed ones only: the caller's
        promise). They stay in the kernel's page cache, so a later read faults them back cheaply, but
        they stop counting in the broker's resident memory: without this every byte written or read
        stays in RSS for the segment's life. New bytes are released as `upto` passes them; every
        `sweep_every_s` the whole range again (pages that readers faulted back in). Returns bytes
        advised."""
        page = mmap.PAGESIZE
        start = self._released
        if now - self._last_sweep >= sweep_every_s:
            start, self._last_sweep = 0, now
        done = 0
        for seg in list(self.segments):
            lo = max(seg.base, start) - seg.base
            hi = min(seg.end, upto) - seg.base
            lo -= lo % page
            hi -= hi % page
            if hi <= lo:
                continue
            try:
                seg.mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            except (ValueError, OSError):   # closed or remapped under us (truncation, expiry)
                continue
            done += hi - lo
        self._released = max(self._released, upto - upto % page) if upto > 0 else self._released
        return done

    def flush_range(self, start: int, end: int) -> None:
        """fdatasync every segment holding bytes of [start, end)."""
        for s in list(self.segments):
            if s.end > start and s.base < end:
                os.fdatasync(s.fd)
