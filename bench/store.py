"""`orbitmq bench store`: the storage engine against the raw disk, measured in one run, in one DIR.

Phases, each bounded by --messages and --seconds:
- append: `put_batch_record` of batch records of about --batch-bytes of --size-byte messages, as a
  producer builds them (built before the clock starts: `encode_mb_per_s` is the producer's cost,
  measured apart), async flush (no fsync on the caller): the broker's whole work per batch
  (both CRCs checked, header stamped, one copy into the log);
- legacy: `put_batch` of --batch messages as one-message records (the per-message path), and single
  `put` appends (`append_single_msgs_per_s`);
- raw_write: the same message bytes written with plain buffered sequential writes of --size each;
- raw_fsync: 4 KiB write + fdatasync, one after another;
- sync_append: sync flush with --writers concurrent asyncio writers, each appending a batch record
  of --sync-batch messages and awaiting `store.flushed(end)`; the flush thread group-commits, so one
  fdatasync releases many; `sync_append_single_msgs_per_s` is the same with one-message `put`s.
Ratios: append_vs_raw = append_mb_per_s (message bytes) / raw_write_mb_per_s, group_commit_gain =
sync_append_msgs_per_s / raw_fsync_per_s (`group_commit_gain_single` for one-message appends).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
from pathlib import Path

from orbitmq.broker.store import Message, MessageStore, StoreConfig
from orbitmq.broker.store import batch_record as br

TOPIC = "BenchTopic"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=200_000, help="messages per append phase (default 200000)")
    p.add_argument("--size", type=int, default=1024, help="message body bytes (default 1024)")
    p.add_argument("--dir", required=True, help="directory to write in (emptied phase by phase; removed after)")
    p.add_argument("--batch", type=int, default=64, help="messages per put_batch in the append phase (default 64)")
    p.add_argument("--writers", type=int, default=256, help="concurrent writers in the sync phase (default 256)")
    p.add_argument("--batch-bytes", type=int, default=256 * 1024,
                   help="message bytes per batch record in the append phase (default 256 KiB)")
    p.add_argument("--sync-batch", type=int, default=64, help="messages per batch record of a sync writer (default 64)")
    p.add_argument("--seconds", type=float, default=10.0, help="time limit of each phase (default 10)")


def _fresh(root: Path, name: str) -> Path:
    d = root / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def _messages(n: int, size: int) -> list[Message]:
    body = os.urandom(size)
    return [Message("BenchTopic", body, queue_id=i % 8, keys=[f"k{i}"]) for i in range(n)]


def _records(n: int, size: int, per: int, first: int = 0) -> tuple[list[bytes], float]:
    """Batch records holding n messages (`per` each), and the seconds it took to build them."""
    body = os.urandom(size)
    out = []
    t0 = time.perf_counter()
    for i in range(0, n, per):
        k = min(per, n - i)
        out.append(br.encode(TOPIC, [body] * k, id_prefix="BENCH0000000000", id_first=first + i, born_ts=1,
                             born_host="bench"))
    return out, time.perf_counter() - t0


def bench_append_records(d: Path, records: list[bytes], seconds: float) -> tuple[int, float]:
    store = MessageStore(StoreConfig(store_dir=str(d), flush_mode="async", expiry_interval_s=0))
    store.open()
    try:
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        for i, rec in enumerate(records):
            r, _ = store.put_batch_record(rec, i % 8, dedupe=False)
            n += r.count
            if time.perf_counter() > deadline:
                break
        return n, time.perf_counter() - t0
    finally:
        store.close()


def bench_append(d: Path, msgs: list[Message], batch: int, seconds: float) -> tuple[int, int, float]:
    store = MessageStore(StoreConfig(store_dir=str(d), flush_mode="async", expiry_interval_s=0))
    store.open()
    try:
        n = nbytes = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        for i in range(0, len(msgs), batch):
            rs = store.put_batch(msgs[i:i + batch])
            n += len(rs)
            nbytes += sum(r.size for r in rs)
            if time.perf_counter() > deadline:
                break
        return n, nbytes, time.perf_counter() - t0
    finally:
        store.close()


def bench_single(d: Path, msgs: list[Message], seconds: float) -> tuple[int, float]:
    store = MessageStore(StoreConfig(store_dir=str(d), flush_mode="async", expiry_interval_s=0))
    store.open()
    try:
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        for m in msgs:
            store.put(m)
            n += 1
            if n % 1024 == 0 and time.perf_counter() > deadline:
                break
        return n, time.perf_counter() - t0
    finally:
        store.close()


def bench_raw_write(d: Path, n: int, size: int, seconds: float) -> tuple[int, float]:
    chunk = os.urandom(size)
    written = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    with open(d / "raw.bin", "wb") as f:
        for i in range(n):
            f.write(chunk)
            written += size
            if i % 4096 == 0 and time.perf_counter() > deadline:
                break
        f.flush()
    return written, time.perf_counter() - t0


def bench_raw_fsync(d: Path, seconds: float, limit: int = 100_000) -> tuple[int, float]:
    block = os.urandom(4096)
    fd = os.open(d / "fsync.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + min(seconds, 5.0)
        while n < limit and time.perf_counter() < deadline:
            os.write(fd, block)
            os.fdatasync(fd)
            n += 1
        return n, time.perf_counter() - t0
    finally:
        os.close(fd)


def bench_sync_records(d: Path, records: list[bytes], writers: int, seconds: float) -> tuple[int, float]:
    store = MessageStore(StoreConfig(store_dir=str(d), flush_mode="sync", expiry_interval_s=0))
    store.open()

    async def main() -> tuple[int, float]:
        count = [0]
        it = iter(enumerate(records))
        deadline = time.perf_counter() + seconds

        async def writer() -> None:
            for i, rec in it:
                r, _ = store.put_batch_record(rec, i % 8, dedupe=False)
                await store.flushed(r.end_offset)
                count[0] += r.count
                if time.perf_counter() > deadline:
                    return

        t0 = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        return count[0], time.perf_counter() - t0

    try:
        return asyncio.run(main())
    finally:
        store.close()


def bench_sync_append(d: Path, msgs: list[Message], writers: int, seconds: float) -> tuple[int, float]:
    store = MessageStore(StoreConfig(store_dir=str(d), flush_mode="sync", expiry_interval_s=0))
    store.open()

    async def main() -> tuple[int, float]:
        count = [0]
        it = iter(msgs)
        deadline = time.perf_counter() + seconds

        async def writer() -> None:
            for m in it:
                r = store.put(m)
                await store.flushed(r.end_offset)
                count[0] += 1
                if time.perf_counter() > deadline:
                    return

        t0 = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        return count[0], time.perf_counter() - t0

    try:
        return asyncio.run(main())
    finally:
        store.close()


def run(args: argparse.Namespace) -> dict:
    if args.messages < 1 or args.size < 1 or args.batch < 1 or args.writers < 1 or args.seconds <= 0 \
            or args.batch_bytes < 1 or args.sync_batch < 1:
        raise SystemExit("need --messages, --size, --batch, --writers, --batch-bytes, --sync-batch >= 1 "
                         "and --seconds > 0")
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    per = max(1, args.batch_bytes // args.size)
    records, enc_secs = _records(args.messages, args.size, per)
    legacy_n = min(args.messages, 100_000)
    msgs = _messages(legacy_n, args.size)
    sync_records, _ = _records(args.messages, args.size, args.sync_batch)
    names = ("append", "legacy", "single", "raw", "fsync", "sync", "sync_single")
    try:
        n, secs = bench_append_records(_fresh(root, "append"), records, args.seconds)
        ln, lbytes, lsecs = bench_append(_fresh(root, "legacy"), msgs, args.batch, args.seconds)
        n1, secs1 = bench_single(_fresh(root, "single"), msgs, args.seconds)
        raw_bytes, raw_secs = bench_raw_write(_fresh(root, "raw"), args.messages, args.size, args.seconds)
        fs_n, fs_secs = bench_raw_fsync(_fresh(root, "fsync"), args.seconds)
        sn, ssecs = bench_sync_records(_fresh(root, "sync"), sync_records, args.writers, args.seconds)
        s1n, s1secs = bench_sync_append(_fresh(root, "sync_single"), msgs, args.writers, args.seconds)
    finally:
        for name in names:
            shutil.rmtree(root / name, ignore_errors=True)
    append_mb = n * args.size / secs / 1e6
    raw_mb = raw_bytes / raw_secs / 1e6
    fsync_per_s = fs_n / fs_secs
    sync_per_s = sn / ssecs
    sync1_per_s = s1n / s1secs
    return {
        "messages": n, "size": args.size, "batch_messages": per, "writers": args.writers,
        "sync_batch": args.sync_batch,
        "append_msgs_per_s": round(n / secs),
        "append_mb_per_s": round(append_mb, 1),
        "encode_mb_per_s": round(len(records) and args.messages * args.size / enc_secs / 1e6, 1),
        "append_legacy_msgs_per_s": round(ln / lsecs),
        "append_legacy_mb_per_s": round(ln * args.size / lsecs / 1e6, 1),
        "append_single_msgs_per_s": round(n1 / secs1),
        "raw_write_mb_per_s": round(raw_mb, 1),
        "raw_fsync_per_s": round(fsync_per_s),
        "sync_append_msgs_per_s": round(sync_per_s),
        "sync_append_mb_per_s": round(sync_per_s * args.size / 1e6, 1),
        "sync_append_single_msgs_per_s": round(sync1_per_s),
        "sync_writers": "asyncio tasks",
        "append_vs_raw": round(append_mb / raw_mb, 3),
        "append_legacy_vs_raw": round(ln * args.size / lsecs / 1e6 / raw_mb, 3),
        "group_commit_gain": round(sync_per_s / fsync_per_s, 2),
        "group_commit_gain_single": round(sync1_per_s / fsync_per_s, 2),
    }
