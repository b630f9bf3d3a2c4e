"""`MessageStore`: the broker's storage engine facade (see DESIGN.md "Storage engine contract").

Owns: the append path (queue offsets assigned under one lock, one contiguous write per batch),
reads through the consume queues, metadata as META records, replication entry points
(read_raw/append_raw/truncate, confirm offset), expiry and the lifecycle of the commitlog, the
flush thread, the dispatcher thread and the index database. No sockets, no asyncio loop of its
own (asyncio callers await `flushed()`, resolved from the flush thread).

Files under `store_dir`: `commitlog/` (segments), `index/` (rocksdict), `TRUNCATING` (present only
while a truncation runs; a restart finishes it), `CLEAN_SHUTDOWN` (present only while the store is
closed after a clean close: open() takes the end of the log from it instead of scanning the last
segment when it matches the files, see checkpoint.py, and removes it durably before any write).

Who may write: a store with a write gate (`set_write_gate`, an HA replica) appends locally only
while the gate says so (the master) and takes replicated bytes (`append_raw`) only while it does
not; the gate is consulted under the append lock by every local write path (sends, META records,
snapshots, expiry), so a follower's log stays byte for byte a prefix of its master's. A follower
keeps a segment holding META records until a snapshot covering it has arrived from the master.
Without a gate (standalone, tools, tests) both are allowed.

Truncation and metadata: META records applied after the truncation point are undone by
rebuilding the metadata tables from the last snapshot record before the point plus a replay of
the META records between (the index keeps where every META record is), in the same WriteBatch
that removes the truncated records' index entries and moves the checkpoint back.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orbitmq.broker import names
from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store import checkpoint as ck
from orbitmq.broker.store import checkpoint_file as ckf
from orbitmq.broker.store import dedup
from orbitmq.broker.store import expiry as ex
from orbitmq.broker.store import index_store as ix
from orbitmq.broker.store import record as rc
from orbitmq.broker.store.commitlog import CommitLog, fsync_dir
from orbitmq.broker.store.dispatcher import (
    EXT_OP_PREFIX,
    OP_GROUP_DEL,
    OP_GROUP_PUT,
    OP_OFFSET,
    OP_SNAPSHOT,
    OP_TOPIC_DEL,
    OP_TOPIC_PUT,
    Dispatcher,
    apply_meta,
    empty_meta,
    parse_batch_fields,
    parse_index_fields,
)
from orbitmq.broker.store.errors import (
    BadMessage,
    CorruptRecord,
    EmptyBody,
    LocalWriteRefused,
    MessageTooLarge,
    StoreClosed,
    StoreError,
)
from orbitmq.broker.store.flush import Flusher
from orbitmq.broker.store.record import Message

log = logging.getLogger("orbitmq.broker.store")

RESTARTING = "RESTARTING"   # present only while start_log_at runs; open() finishes it
TRUNCATING = "TRUNCATING"   # present only while a truncation runs; open() finishes it
CLOSE_DRAIN_S = 2.0         # close() lets the dispatcher index what is confirmed for this long at most

GiB = 1 << 30
MiB = 1 << 20
MAX_DISPATCH_HINTS = 4096          # one-message appends' index fields kept for the dispatcher (dispatcher.hints)
_CRC_AT = struct.Struct("<I").unpack_from

__all__ = ["BatchPutResult", "GetResult", "GetStatus", "Message", "MessageStore", "PutResult", "RawGetResult",
           "StoreConfig"]


@dataclass
class StoreConfig:
    """Storage engine settings (the broker's `[store]` TOML table; store_dir/flush_mode from the broker)."""

    store_dir: str = "./orbitmq-store"
    segment_size: int = GiB
    flush_mode: str = "async"  # async: periodic fdatasync; sync: group commit on demand
    flush_interval_s: float = 0.5
    auto_confirm: bool = True  # False for an HA replica: dispatch only up to set_confirm_offset()
    store_host: str = "127.0.0.1:0"
    retention_hours: float = 72.0
    disk_max_ratio: float = 0.85
    expiry_interval_s: float = 10.0  # 0: no expiry thread (call expire() yourself)
    dispatch_batch_bytes: int = 4 * MiB
    meta_wait_s: float = 3.0  # META writes wait this long to become readable
    max_scan_entries: int = 4096  # consume queue entries one filtered read looks at
    dedup_window_s: float = 120.0  # put_batch_dedup: a retry stored this recently is answered, not stored
    resident_tail_bytes: int = 64 * MiB  # the newest flushed bytes stay mapped; older pages leave RSS

    def validate(self) -> None:
        if self.flush_mode not in ("async", "sync"):
            raise ValueError(f"flush_mode must be async or sync, got {self.flush_mode!r}")
        if self.segment_size < 64 * 1024:
            raise ValueError("segment_size must be at least 64 KiB")
        if not 0 < self.disk_max_ratio <= 1:
            raise ValueError("disk_max_ratio must be in (0, 1]")


@dataclass(slots=True)
class PutResult:
    physical_offset: int
    size: int
    end_offset: int
    queue_id: int
    queue_offset: int
    msg_id: str


@dataclass(slots=True)
class BatchPutResult:
    """Where a batch record went: its messages have queue offsets base_queue_offset .. + count - 1."""

    physical_offset: int
    size: int
    end_offset: int
    queue_id: int
    base_queue_offset: int
    count: int
    first_msg_id: str


class GetStatus(StrEnum):
    FOUND = "FOUND"
    NO_NEW = "NO_NEW"
    OFFSET_MOVED = "OFFSET_MOVED"
    OFFSET_TOO_BIG = "OFFSET_TOO_BIG"
    NO_QUEUE = "NO_QUEUE"


@dataclass
class GetResult:
    status: GetStatus
    messages: list[Message] = field(default_factory=list)
    next_offset: int = 0
    min_offset: int = 0
    max_offset: int = 0


@dataclass
class RawGetResult:
    """get_raw: `items` in log order, each a decoded one-message record (Message) or the verified
    bytes of a whole batch record; the reader keeps the messages of a batch whose queue offsets are
    in [requested offset, next_offset) and whose tag is asked for (a batch may hold others)."""

    status: GetStatus
    items: list[Any] = field(default_factory=list)
    next_offset: int = 0
    min_offset: int = 0
    max_offset: int = 0
    count: int = 0


class MessageStore:
    """Thread-safe; `open()` before use, `close()` at the end."""

    def __init__(self, config: StoreConfig) -> None:
        config.validate()
        self.config = config
        self.dir = config.store_dir
        self._lock = threading.Lock()  # the append lock (also guards _next and truncation)
        self._next: dict[tuple[str, int], int] = {}
        self._offsets_overlay: dict[tuple[str, str, int], int] = {}
        self._auto_confirm = config.auto_confirm
        self._confirm = 0
        self._host_b = config.store_host.encode()
        self._id_prefix = os.urandom(6).hex().upper()
        self._ids = itertools.count(1)
        self._topic_ok: set[str] = set()
        self._gate: Callable[[], bool] | None = None  # None: local and replicated writes both allowed
        self._retention_floor: Callable[[], int | None] | None = None
        self._kept_logged = -1
        self._expiry_snapshot: tuple[int, int] | None = None  # (start, end) of expiry's last snapshot
        self._recent = dedup.RecentBatches()  # batches beyond the dispatch point, by first msg_id
        self._raw_end = 0       # end of what came by replication (or was in the log at open)
        self._tail_scanned = 0  # the replicated tail below this is in _recent or the index
        self._opened = False
        self._expiry_stop = threading.Event()
        self._expiry_thread: threading.Thread | None = None
        self.log: CommitLog | None = None
        self.db: ix.IndexStore | None = None
        self.dispatcher: Dispatcher | None = None
        self.flusher: Flusher | None = None
        self.ext_hook: Callable[[Any, dict, int], None] | None = None  # set before open(); see append_ext
        # how the last open() found the end of the log: path "checkpoint" (a clean-shutdown
        # checkpoint matched the files), "scan" (none, or refused: reason says why) or "new"
        # (seconds: the whole open; log_end_s: finding the end of the log; tail_bytes: undispatched tail)
        self.recovery: dict[str, Any] = {"path": "", "reason": "", "seconds": 0.0, "log_end_s": 0.0, "tail_bytes": 0}
        self.checkpoint_written = False  # the last close() left a clean-shutdown checkpoint

    # ---- lifecycle --------------------------------------------------------------------------------

    def open(self) -> None:
        """Recover the commitlog, finish an interrupted truncation, resume dispatching. A failure
        (a corrupt file read at start) closes what was opened, so the store can be opened again."""
        os.makedirs(self.dir, exist_ok=True)
        t0 = time.monotonic()
        self.log = CommitLog(os.path.join(self.dir, "commitlog"), self.config.segment_size)
        self.log.map_segments()
        index_dir = os.path.join(self.dir, "index")
        try:
            self.db = ix.IndexStore(index_dir)
        except BaseException:
            self.log.close()
            raise
        try:
            trusted = self._find_log_end()
            self._recover(index_dir, trusted)
            self.recovery["seconds"] = round(time.monotonic() - t0, 4)
        except BaseException as e:
            self.db.close()
            self.log.close()
            if type(e) is Exception:   # rocksdict reports a corrupt table or WAL as a bare Exception
                raise ix.IndexCorrupt(f"{index_dir}: cannot read the index ({str(e).strip()[:300]}); it is "
                                      f"derived from the commitlog: move {index_dir} away and start again to "
                                      "rebuild it") from None
            raise
        self._start_threads()

    def _find_log_end(self) -> bool:
        """The end of the log from a clean-shutdown checkpoint that matches the files, else from a
        scan of the last segment. The checkpoint is removed durably either way, before any write,
        so a later crash never finds a stale one. Returns whether the checkpoint was trusted."""
        t0 = time.monotonic()
        path = ckf.path_in(self.dir)
        cp, why = ckf.read(path)
        trusted = False
        if cp is not None:
            seen = ckf.observe(self.dir, self.log, (TRUNCATING, RESTARTING), self.db.checkpoint(), cp)
            verdict = ck.judge(cp, seen)
            trusted, why = verdict.trusted, verdict.reason
        if trusted:
            self.log.resume_at(cp.log_end)
            self.recovery = {"path": "checkpoint", "reason": why}
        else:
            new = not self.log.segments
            if cp is not None or why != "missing":
                log.warning("clean-shutdown checkpoint %s not used: %s; scanning the last segment for the end "
                            "of the log", path, why)
            elif new:
                why = "new store"
            else:
                log.info("no clean-shutdown checkpoint (the last run did not close the store): scanning the "
                         "last segment for the end of the log")
            self.log.recover_end()
            self.recovery = {"path": "new" if new else "scan", "reason": why}
        ckf.remove(path)
        self.recovery.update(seconds=0.0, log_end_s=round(time.monotonic() - t0, 4), tail_bytes=0)
        return trusted

    def _recover(self, index_dir: str, trusted: bool = False) -> None:
        self.dispatcher = Dispatcher(self.log, self.db, self._dispatch_target, self.config.dispatch_batch_bytes)
        self.dispatcher.load()
        restart = os.path.join(self.dir, RESTARTING)
        if os.path.exists(restart):
            with open(restart) as f:
                at = int(f.read().strip() or 0)
            log.warning("finishing an interrupted start of an empty log at %d", at)
            self._start_at_locked(at)
        marker = os.path.join(self.dir, TRUNCATING)
        if os.path.exists(marker):
            with open(marker, "rb") as f:
                raw = f.read()
            try:
                text = raw.decode().strip()
                point = int(text) if text else self.log.max_offset
            except (UnicodeDecodeError, ValueError):
                raise StoreError(f"{marker}: an interrupted truncation marker that does not hold an offset "
                                 f"({raw[:60]!r}); cannot tell where to cut") from None
            point = min(point, self.log.max_offset)   # past the end: nothing left to cut
            if not self.log.is_boundary(point):
                raise StoreError(f"{marker}: truncation point {point} is not a record boundary of the log "
                                 f"[{self.log.min_offset}, {self.log.max_offset}]; nothing was cut")
            log.warning("finishing an interrupted truncation to %d", point)
            self._truncate_locked(point)
        if self.dispatcher.dispatched > self.log.max_offset:
            log.warning("index checkpoint %d beyond the log end %d: rebuilding the index",
                        self.dispatcher.dispatched, self.log.max_offset)
            self.db.close()
            ix.IndexStore.destroy(index_dir)
            self.db = ix.IndexStore(index_dir)
            self.dispatcher = Dispatcher(self.log, self.db, self._dispatch_target, self.config.dispatch_batch_bytes)
            self.dispatcher.load()
        self._confirm = self.dispatcher.dispatched
        self._raw_end = self.log.max_offset  # the undispatched tail's ids are not in memory after a restart
        self._tail_scanned = self.dispatcher.dispatched
        self.recovery["tail_bytes"] = self.log.max_offset - self.dispatcher.dispatched
        self._rebuild_next()
        if not trusted:   # a clean close fdatasync'ed everything already
            self.log.flush_range(self.log.min_offset, self.log.max_offset)

    def _start_threads(self) -> None:
        self.flusher = Flusher(self._flush_range, lambda: self.log.max_offset, self.config.flush_mode,
                               self.config.flush_interval_s, flushed=self.log.max_offset)
        self.flusher.start()
        self.dispatcher.ext_hook = self.ext_hook
        self.dispatcher.start()
        self._opened = True
        if self.config.expiry_interval_s > 0:
            self._expiry_stop.clear()
            self._expiry_thread = threading.Thread(target=self._expiry_loop, name="orbitmq-expiry", daemon=True)
            self._expiry_thread.start()
        r = self.recovery
        log.info("store open dir=%s min=%d max=%d dispatched=%d segments=%d recovery=%s (%s) in %.3fs "
                 "(log end found in %.3fs)", self.dir, self.log.min_offset, self.log.max_offset,
                 self.dispatcher.dispatched, len(self.log.segments), r["path"], r["reason"], r["seconds"],
                 r["log_end_s"])

    def close(self) -> None:
        """Refuse further writes, let the dispatcher index what is confirmed (bounded), flush, stop
        the threads, write the clean-shutdown checkpoint (when every step went well), close the
        files (idempotent)."""
        if not self._opened:
            return
        with self._lock:   # every write path checks _opened under this lock: none after this
            self._opened = False
        self.checkpoint_written = False
        self._expiry_stop.set()
        if self._expiry_thread is not None:
            self._expiry_thread.join()
            self._expiry_thread = None
        d = self.dispatcher
        if d.error is None:
            d.wait_dispatched(self._dispatch_target(), CLOSE_DRAIN_S)
        d.stop()
        self.flusher.stop()
        try:
            self._write_checkpoint()
        except Exception:  # noqa: BLE001 - no checkpoint only costs the next start a scan
            log.exception("clean-shutdown checkpoint not written; the next start scans the log")
        self.db.close()
        self.log.close()

    def _write_checkpoint(self) -> None:
        """Every writer is stopped: if the log is fdatasync'ed to its end and nothing failed, sync
        the index's dispatch checkpoint and record the clean-shutdown checkpoint durably."""
        d, fl = self.dispatcher, self.flusher
        problem = ("dispatch stopped at a corrupt record" if d.error is not None else
                   "a flush failed" if fl.error is not None else
                   "not flushed to the end" if fl.flushed < self.log.max_offset else "")
        if problem:
            log.warning("no clean-shutdown checkpoint written (%s): the next start scans the log", problem)
            return
        with self._lock, d.lock:
            self.db.sync_checkpoint(d.dispatched)
            cp = ckf.snapshot(self.log, d.dispatched, int(time.time() * 1000))
            ckf.write(ckf.path_in(self.dir), cp)
        self.checkpoint_written = True
        log.info("clean-shutdown checkpoint written: log end %d, dispatched %d, %d segments", cp.log_end,
                 cp.dispatched, cp.segments)

    def __enter__(self) -> MessageStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if not self._opened:
            raise StoreClosed("the store is not open")

    def _rebuild_next(self) -> None:
        """Queue next offsets = dispatched queue ends + the undispatched tail of the log."""
        nxt = dict(self.dispatcher.qmax)
        for _off, magic, buf in self.log.records(self.dispatcher.dispatched, None,
                                                 lambda e: log.error("corrupt record in the log tail: %s", e)):
            if magic == rc.MAGIC_BLANK:
                continue
            if magic == rc.MAGIC_BATCH:
                h = br.header(buf)
                topic = bytes(buf[br.HEADER_SIZE:br.HEADER_SIZE + h[br.B_TOPIC_LEN]]).decode()
                key = (topic, h[br.B_QUEUE_ID])
                end = h[br.B_BASE] + h[br.B_COUNT]
                if end > nxt.get(key, 0):
                    nxt[key] = end
                continue
            m, qid, qoff, _total, topic, _t, _k, _i, body = parse_index_fields(buf)
            if m == rc.MAGIC_MESSAGE:
                key = (topic, qid)
                if qoff + 1 > nxt.get(key, 0):
                    nxt[key] = qoff + 1
            else:
                op = json.loads(body)
                if op.get("op") == OP_TOPIC_DEL:
                    nxt = {k: v for k, v in nxt.items() if k[0] != op["topic"]}
        self._next = nxt

    # ---- confirm offset ---------------------------------------------------------------------------

    def _dispatch_target(self) -> int:
        return self.log.max_offset if self._auto_confirm else min(self._confirm, self.log.max_offset)

    @property
    def confirm_offset(self) -> int:
        return self._dispatch_target()

    def set_confirm_offset(self, offset: int) -> None:
        """HA: consumers may see records up to `offset` (never beyond the log end)."""
        self._confirm = min(offset, self.log.max_offset)
        self.dispatcher.wake()

    def set_auto_confirm(self, auto: bool) -> None:
        """True (standalone): confirm = max offset. False (HA): only set_confirm_offset moves it."""
        if not auto and self._auto_confirm:
            self._confirm = self.dispatcher.dispatched
        self._auto_confirm = auto
        self.dispatcher.wake()

    def hold_dispatch(self) -> None:
        """Hold the dispatcher wake-ups this thread's appends cause until `run_held_dispatch()`."""
        self.dispatcher.hold_wakes()

    def run_held_dispatch(self) -> None:
        """After hold_dispatch(): index what the held appends wrote, here if that is small and the
        dispatcher idle (no thread wake-up per one-message send), else by the dispatcher thread."""
        self.dispatcher.run_held()

    @property
    def dispatched_offset(self) -> int:
        return self.dispatcher.dispatched

    def wait_dispatched(self, end: int, timeout: float) -> bool:
        """Block until indexes cover everything before `end`; False on timeout."""
        return self.dispatcher.wait_dispatched(end, timeout)

    def add_dispatch_listener(self, fn: Callable[[set[tuple[str, int]]], None]) -> None:
        """`fn(queues)` runs on the dispatcher thread after new messages of `queues` became visible."""
        self.dispatcher.listeners.append(fn)

    def add_topic_listener(self, fn: Callable[[set[str] | None], None]) -> None:
        """`fn(names)` runs on the dispatcher thread after topic configs became visible (created,
        deleted, or a snapshot): on every replica, as the META records are dispatched. `names` are the
        topics changed in that round, or None after a snapshot (any topic may have changed)."""
        self.dispatcher.topic_listeners.append(fn)

    # ---- who may write ------------------------------------------------------------------------------

    def set_write_gate(self, gate: Callable[[], bool] | None) -> None:
        """HA: `gate()` True = this replica is master (local appends, no replicated bytes), False =
        follower/learner/unknown (replicated bytes only). Consulted under the append lock."""
        with self._lock:
            self._gate = gate

    def set_retention_floor(self, floor: Callable[[], int | None] | None) -> None:
        """HA master: `floor()` is the lowest offset a replica it serves still has to read (None:
        none); expiry keeps the segments above it past their retention (not past the disk ratio)."""
        self._retention_floor = floor

    def may_write_locally(self) -> bool:
        g = self._gate
        return g is None or bool(g())

    def _check_local_write(self, what: str) -> None:
        """Append lock held: refuse a local append on a closed store (close() may have written its
        checkpoint) or on a store that only takes replicated bytes."""
        if not self._opened:
            raise StoreClosed("the store is closed")
        g = self._gate
        if g is not None and not g():
            raise LocalWriteRefused(f"{what} refused: this replica is not master, its log only takes "
                                    "the master's bytes")

    # ---- appends ----------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):012X}"

    def put(self, msg: Message) -> PutResult:
        """Append one message (no fsync); the result carries its offsets and message id."""
        return self.put_batch([msg])[0]

    def put_batch(self, msgs: list[Message]) -> list[PutResult]:
        """Append messages as one contiguous write (split only at a segment end); queue offsets in order."""
        return self._put(msgs, False)[0]

    def put_batch_dedup(self, msgs: list[Message], now_ms: int | None = None) -> tuple[list[PutResult], bool]:
        """put_batch, unless the messages are a producer's retry of a send stored within
        `dedup_window_s` (same msg_ids in the same order, see dedup.py): then the original
        results and True, and nothing is appended. Checked and appended under one lock."""
        return self._put(msgs, self.config.dedup_window_s > 0, now_ms)

    def _put(self, msgs: list[Message], dedupe: bool, now_ms: int | None = None) -> tuple[list[PutResult], bool]:
        self._check_open()
        prepared = []
        total = 0
        topic_ok = self._topic_ok
        host_b = self._host_b
        hdr = rc.HEADER_SIZE + len(host_b)
        for m in msgs:
            topic = m.topic
            if topic not in topic_ok:
                names.validate_topic(topic)
                if len(topic_ok) < 100_000:
                    topic_ok.add(topic)
            if m.tags:
                names.validate_tag(m.tags)
            for k in m.keys:
                names.validate_key(k)
            mid = m.msg_id or self._new_id()
            pb = rc.encode_properties(m.tags, m.keys, mid, m.properties)
            body = m.body if type(m.body) is bytes else bytes(m.body)
            bb = m.born_host.encode() if m.born_host else b""
            tb = topic.encode()
            rc.check_fields(flag=m.flag, queue_id=m.queue_id, sys_flag=m.sys_flag, born_ts=m.born_timestamp,
                            reconsume=m.reconsume_times, prepared_tx_offset=m.prepared_tx_offset, topic_b=tb,
                            props_b=pb)
            n = hdr + len(tb) + len(bb) + len(pb) + len(body)
            prepared.append((m, tb, bb, pb, body, mid, n))
            total += n
        now = int(time.time() * 1000)
        results = []
        encode_into = rc.encode_into
        magic = rc.MAGIC_MESSAGE
        log_ = self.log
        ids = [p[5] for p in prepared] if dedupe and msgs and all(m.msg_id for m in msgs) else None
        with self._lock:
            self._check_local_write("append")
            if ids is not None:
                oldest = (now_ms if now_ms is not None else now) - int(self.config.dedup_window_s * 1000)
                orig = self._find_original_locked(msgs[0].topic, ids, oldest)
                if orig is not None:
                    return [PutResult(r.physical_offset, r.size, r.physical_offset + r.size, r.queue_id,
                                      r.queue_offset, r.msg_id) for r in orig], True
            nxt = self._next
            buf = bytearray()
            pos = off = log_.max_offset
            room = log_.room()
            hints = self.dispatcher.hints
            if len(hints) > MAX_DISPATCH_HINTS:
                hints.clear()      # (hints the dispatcher never reached: only an optimisation is lost)
            for m, tb, bb, pb, body, mid, n in prepared:
                if n > room:  # the rest goes to the next segment (a record never spans two)
                    if buf:
                        log_.write(pos, buf)
                        buf = bytearray()
                    pos = off = log_.reserve(n)
                    room = log_.room()
                key = (m.topic, m.queue_id)
                q = nxt.get(key, 0)
                b0 = len(buf)
                encode_into(buf, magic, tb, bb, host_b, pb, body, flag=m.flag, queue_id=m.queue_id,
                            queue_offset=q, physical_offset=off, sys_flag=m.sys_flag,
                            born_ts=m.born_timestamp or now, store_ts=now, reconsume=m.reconsume_times,
                            prepared_tx_offset=m.prepared_tx_offset)
                nxt[key] = q + 1   # only once the record encoded
                # what the dispatcher would parse back out of this record (dispatcher.hints)
                hints[off] = (_CRC_AT(buf, b0)[0], n, m.topic, m.queue_id, q, rc.tag_hash(m.tags),
                              " ".join(m.keys).split() if m.keys else (), mid)
                results.append(PutResult(off, n, off + n, m.queue_id, q, mid))
                off += n
                room -= n
            if buf:
                log_.write(pos, buf)
            if ids is not None:
                rec = self._recent
                rec.add(ids[0], results[0].physical_offset)
                if len(rec) > 4096:
                    rec.prune(self.dispatcher.dispatched)
        if self._auto_confirm:
            self.dispatcher.wake()
        return results, False

    def put_batch_record(self, data: bytes | memoryview, queue_id: int, *, dedupe: bool = True, max_body: int = 0,
                         now_ms: int | None = None) -> tuple[BatchPutResult, bool]:
        """Append a producer-built batch record (batch_record.py) as ONE commitlog record: validated
        (both CRCs, lengths, names of its distinct tags and keys, body sizes up to `max_body`),
        stamped with the queue id, the next queue offset, its physical offset and the store time,
        and written as is. Unless `dedupe` is off, a retry of a batch stored within
        `dedup_window_s` (same topic, first id and count) gets the original result and True."""
        self._check_open()
        if len(data) > br.MAX_RECORD_BYTES:
            raise MessageTooLarge(f"a batch record of {len(data)} bytes is over the limit of {br.MAX_RECORD_BYTES} "
                                  "(replication moves a record whole): send smaller batches")
        try:
            v = br.parse(data)
        except rc.CodecError as e:
            raise BadMessage(f"bad batch record: {e.reason}") from None
        topic = v.topic
        if topic not in self._topic_ok:
            names.validate_topic(topic)
            if len(self._topic_ok) < 100_000:
                self._topic_ok.add(topic)
        for t in v.tags:
            names.validate_tag(t)
        for k in v.keys:
            names.validate_key(k)
        if v.has_empty_body():
            raise EmptyBody("a message of the batch has an empty body")
        if max_body and v.total - v.meta_len > max_body and max(v.body_len) > max_body:   # (no body is over its batch)
            raise MessageTooLarge(f"a message body of {max(v.body_len)} bytes exceeds max_message_size {max_body}")
        rc.check_fields(flag=0, queue_id=queue_id, sys_flag=0, born_ts=v.born_ts, reconsume=0, prepared_tx_offset=0)
        meta = bytearray(data[:v.meta_len])
        rest = memoryview(data)[v.meta_len:]
        first_id = v.msg_id(0)
        now = int(time.time() * 1000)
        count = v.count
        log_ = self.log
        with self._lock:
            self._check_local_write("append")
            if dedupe and self.config.dedup_window_s > 0:
                oldest = (now_ms if now_ms is not None else now) - int(self.config.dedup_window_s * 1000)
                orig = self._find_batch_original_locked(topic, first_id, count, oldest)
                if orig is not None:
                    return orig, True
            key = (topic, queue_id)
            q = self._next.get(key, 0)
            pos = log_.reserve(v.total)
            br.restamp(meta, queue_id, q, pos, now)
            log_.write_parts(pos, (meta, rest))
            self._next[key] = q + count
            rec = self._recent
            rec.add(first_id, pos)
            if len(rec) > 4096:
                rec.prune(self.dispatcher.dispatched)
        if self._auto_confirm:
            self.dispatcher.wake()
        return BatchPutResult(pos, v.total, pos + v.total, queue_id, q, count, first_id), False

    def _batch_at(self, phys: int) -> br.BatchView | None:
        """The verified batch record at `phys`, or None (not a batch, outside the log)."""
        if not self.log.min_offset <= phys < self.log.max_offset:
            return None
        try:
            magic, buf = self.log.read_verified(phys)
        except IndexError:
            return None
        return br.parse(buf, verify=False) if magic == rc.MAGIC_BATCH else None

    def _batch_phys_of_id(self, msg_id: str) -> int | None:
        """Physical offset of the batch whose compact ids cover msg_id (from the index), or None."""
        s = br.split_id(msg_id)
        if s is None:
            return None
        prefix, counter = s
        for _k, v in self.db.scan_reverse(ix.batch_id_prefix(prefix), ix.batch_id_key(prefix, counter + 1)):
            return ix.unpack_q(v)
        return None

    def _find_batch_original_locked(self, topic: str, first_id: str, count: int,
                                    oldest_ms: int) -> BatchPutResult | None:
        """The stored batch a retry (same topic, first id, count) repeats (append lock held), or None."""
        self._scan_replicated_tail_locked()
        cands = []
        phys = self._recent.get(first_id)
        if phys is not None:
            cands.append(phys)
        v = self.db.get(ix.id_key(first_id))
        if v is not None:
            cands.append(ix.unpack_q(v))
        sp = br.split_id(first_id)
        if sp is not None:   # a batch of compact ids starting exactly at this one
            v = self.db.get(ix.batch_id_key(*sp))
            if v is not None:
                cands.append(ix.unpack_q(v))
        for phys in cands:
            try:
                b = self._batch_at(phys)
            except (CorruptRecord, rc.CodecError, ValueError):
                b = None
            if b is None or b.topic != topic or b.count != count or b.store_ts < oldest_ms \
                    or b.msg_id(0) != first_id:
                continue
            return BatchPutResult(phys, b.total, phys + b.total, b.queue_id, b.base_queue_offset, b.count, first_id)
        return None

    def _find_original_locked(self, topic: str, ids: list[str], oldest_ms: int) -> list[dedup.StoredRecord] | None:
        """The stored records of an earlier send with these msg_ids (append lock held), or None."""
        self._scan_replicated_tail_locked()
        cands = []
        phys = self._recent.get(ids[0])
        if phys is not None:
            cands.append(phys)
        v = self.db.get(ix.id_key(ids[0]))
        if v is not None and ix.unpack_q(v) != phys:
            cands.append(ix.unpack_q(v))
        for phys in cands:
            if not self.log.min_offset <= phys < self.log.max_offset:
                continue
            try:
                found = dedup.match(self._stored_from(phys), topic, ids, oldest_ms)
            except (CorruptRecord, IndexError, ValueError):
                found = None
            if found is not None:
                return found
        return None

    def _stored_from(self, phys: int):
        """Message records from `phys` on (blanks skipped; stops at a META record)."""
        unpack = rc.HEADER.unpack_from
        for off, magic, buf in self.log.records(phys):
            if magic == rc.MAGIC_BLANK:
                continue
            if magic != rc.MAGIC_MESSAGE:
                return
            _m, qid, qoff, total, topic, _t, _k, msg_id, _b = parse_index_fields(buf)
            yield dedup.StoredRecord(off, total, qid, qoff, topic, msg_id, unpack(buf, 0)[rc.H_STORE_TS])

    def _scan_replicated_tail_locked(self) -> None:
        """Once a replica writes as master: the ids of the replicated tail the index lacks yet."""
        if self._tail_scanned >= self._raw_end:
            return
        start = max(self._tail_scanned, self.dispatcher.dispatched)
        n = 0
        for off, magic, buf in self.log.records(start, self._raw_end):
            if magic == rc.MAGIC_BATCH:
                self._recent.add(br.parse(buf, verify=False).msg_id(0), off)
                n += 1
            elif magic == rc.MAGIC_MESSAGE:
                _m, _q, _o, _s, _t, _g, _k, mid, _b = parse_index_fields(buf)
                if mid:
                    self._recent.add(mid, off)
                    n += 1
        self._tail_scanned = self._raw_end
        if n:
            log.info("dedup: %d message ids of the replicated tail [%d, %d) noted", n, start, self._raw_end)

    def _append_meta(self, op: dict[str, Any]) -> PutResult:
        self._check_open()
        kind = op.get("op")
        body = json.dumps(op, sort_keys=True, separators=(",", ":")).encode()
        now = int(time.time() * 1000)
        buf = bytearray()
        with self._lock:
            self._check_local_write(f"META record {kind!r}")
            pos = self.log.reserve(rc.HEADER_SIZE + len(self._host_b) + len(body))
            n = rc.encode_into(buf, rc.MAGIC_META, b"", b"", self._host_b, b"", body, flag=0, queue_id=-1,
                               queue_offset=-1, physical_offset=pos, sys_flag=0, born_ts=now, store_ts=now,
                               reconsume=0, prepared_tx_offset=0)
            self._meta_appended(op)
            self.log.write(pos, buf)
        if self._auto_confirm:
            self.dispatcher.wake()
        return PutResult(pos, n, pos + n, -1, -1, "")

    def _meta_appended(self, op: dict[str, Any]) -> None:
        """In-memory effects at append time (append lock held)."""
        kind = op["op"]
        if kind == OP_TOPIC_DEL:
            t = op["topic"]
            self._next = {k: v for k, v in self._next.items() if k[0] != t}
            self._offsets_overlay = {k: v for k, v in self._offsets_overlay.items() if k[1] != t}
        elif kind == OP_GROUP_DEL:
            g = op["group"]
            self._offsets_overlay = {k: v for k, v in self._offsets_overlay.items() if k[0] != g}
        elif kind == OP_OFFSET:
            self._offsets_overlay[(op["group"], op["topic"], op["queue_id"])] = op["offset"]

    def _meta_wait(self, r: PutResult) -> PutResult:
        if not self.dispatcher.wait_dispatched(r.end_offset, self.config.meta_wait_s):
            log.warning("META record at %d not dispatched within %.1fs (confirm offset %d)", r.physical_offset,
                        self.config.meta_wait_s, self.confirm_offset)
        return r

    def append_ext(self, op: dict[str, Any]) -> PutResult:
        """Append an extension META record (op "x.<kind>", e.g. pop state): it replicates and truncates
        with the log, metadata tables ignore it, and the dispatcher hands it to `ext_hook`."""
        if not str(op.get("op", "")).startswith(EXT_OP_PREFIX):
            raise ValueError(f"extension records need an op starting with {EXT_OP_PREFIX!r}")
        return self._append_meta(op)

    # ---- durability -------------------------------------------------------------------------------

    def _flush_range(self, start: int, end: int) -> None:
        """The flusher's work: make [start, end) durable, then let flushed pages older than the
        resident tail leave this process's memory (they stay in the page cache)."""
        self.log.flush_range(start, end)
        self.log.release_pages(end - self.config.resident_tail_bytes, time.monotonic())

    def wait_flushed(self, end_offset: int, timeout: float | None = None) -> bool:
        """Block until everything before end_offset is fdatasync'ed; False on timeout."""
        return self.flusher.wait_flushed(end_offset, timeout)

    async def flushed(self, end_offset: int) -> None:
        """Await durability of everything before end_offset (group commit in sync mode)."""
        await self.flusher.flushed_async(end_offset)

    @property
    def flushed_offset(self) -> int:
        return self.flusher.flushed

    # ---- reads ------------------------------------------------------------------------------------

    def min_offset(self, topic: str, queue_id: int) -> int:
        return self.dispatcher.qmin.get((topic, queue_id), 0)

    def max_offset(self, topic: str, queue_id: int) -> int:
        return self.dispatcher.qmax.get((topic, queue_id), 0)

    def queues(self) -> list[tuple[str, int]]:
        """Every (topic, queue_id) that has dispatched messages."""
        return sorted(self.dispatcher.qmax)

    def _queue_window(self, topic: str, queue_id: int, queue_offset: int) -> GetResult | tuple[int, int]:
        """(min, max) of the queue, or the GetResult that answers at once (no queue, moved, ...)."""
        key = (topic, queue_id)
        d = self.dispatcher
        mx = d.qmax.get(key)
        mn = d.qmin.get(key, 0)
        if mx is None:
            if self.db.get(b"t" + topic.encode()) is None:
                return GetResult(GetStatus.NO_QUEUE, next_offset=0, min_offset=0, max_offset=0)
            mx = 0
        if queue_offset < mn:
            return GetResult(GetStatus.OFFSET_MOVED, next_offset=mn, min_offset=mn, max_offset=mx)
        if queue_offset == mx:
            return GetResult(GetStatus.NO_NEW, next_offset=mx, min_offset=mn, max_offset=mx)
        if queue_offset > mx:
            return GetResult(GetStatus.OFFSET_TOO_BIG, next_offset=mx, min_offset=mn, max_offset=mx)
        return mn, mx

    def _cq_from(self, topic: str, queue_id: int, queue_offset: int, end: int):
        """(base queue offset, phys, size, tag hash, count, is_batch) of the consume queue entries
        from the one holding `queue_offset` on (a batch entry may start before it), up to at least
        queue offset `end` when the queue has that many: from the dispatcher's tail cache when it
        holds `queue_offset` (cq_tail.py), then on from the index if the cache ended before `end`."""
        cached = self.dispatcher.cq_tail.read((topic, queue_id), queue_offset)
        if cached is not None:
            yield from cached
            last = cached[-1]
            queue_offset = last[0] + last[4]
            if queue_offset >= end:
                return
        first = True
        batch_size = ix.CQ_VALUE.size
        for k, v in self.db.scan_from_floor(ix.cq_prefix(topic, queue_id), ix.cq_key(topic, queue_id, queue_offset)):
            qo = int.from_bytes(k[-8:], "big", signed=True)
            entry = ix.cq_unpack(v)
            if first:
                first = False
                if qo < queue_offset and not (len(v) > batch_size and qo + entry[3] > queue_offset):
                    continue       # an entry before the offset that does not hold it
            yield (qo, *entry, len(v) > batch_size)

    def _moved(self, key: tuple[str, int], queue_offset: int, mx: int) -> GetResult | None:
        nmin = self.dispatcher.qmin.get(key, 0)
        if nmin > queue_offset:
            return GetResult(GetStatus.OFFSET_MOVED, next_offset=nmin, min_offset=nmin, max_offset=mx)
        return None

    def get_messages(self, topic: str, queue_id: int, queue_offset: int, max_count: int = 32,
                     max_bytes: int = 4 * MiB, tags: set[str] | None = None) -> GetResult:
        """Messages of one queue from queue_offset (see GetStatus); messages of batch records are
        decoded one by one (a read may start and end inside a batch)."""
        self._check_open()
        w = self._queue_window(topic, queue_id, queue_offset)
        if isinstance(w, GetResult):
            return w
        mn, mx = w
        key = (topic, queue_id)
        hashes = {rc.tag_hash(t) for t in tags} if tags else None
        budget = self.config.max_scan_entries if tags else max_count
        msgs: list[Message] = []
        size = 0
        nxt = queue_offset
        scanned = 0
        log_ = self.log
        host = self.config.store_host
        for qo, phys, sz, th, cnt, is_batch in self._cq_from(topic, queue_id, queue_offset, mx):
            if qo >= mx:
                break
            if not is_batch and msgs and size + sz > max_bytes:
                break
            scanned += 1
            if phys < log_.min_offset:
                nxt = qo + cnt
                if not msgs:
                    moved = self._moved(key, queue_offset, mx)
                    if moved is not None:
                        return moved
                continue
            if is_batch:
                if hashes is not None and th != br.TAG_MIXED and th not in hashes:
                    nxt = qo + cnt
                    if scanned >= budget:
                        break
                    continue
                try:
                    magic, buf = log_.read_verified(phys)
                except (IndexError, ValueError):  # expired under us
                    continue
                v = br.parse(buf, verify=False)
                full = False
                for i in range(max(0, queue_offset - qo), cnt):
                    if tags is not None and v.tag_of(i) not in tags:
                        nxt = qo + i + 1
                        continue
                    bl = v.body_len[i]
                    if msgs and size + bl > max_bytes:
                        full = True
                        break
                    msgs.append(v.message(i, host))
                    size += bl
                    nxt = qo + i + 1
                    if len(msgs) >= max_count:
                        full = True
                        break
                if full:
                    break
                nxt = qo + cnt
            else:
                nxt = qo + 1
                if hashes is None or th in hashes:
                    try:
                        m = log_.read_record(phys)
                    except (IndexError, ValueError):  # expired under us
                        continue
                    if tags is None or m.tags in tags:
                        msgs.append(m)
                        size += sz
                        if len(msgs) >= max_count:
                            break
            if scanned >= budget:
                break
        if scanned == 0:
            nxt = mx  # a gap (deleted entries): skip to the end
        return GetResult(GetStatus.FOUND, msgs, nxt, mn, mx)

    def get_raw(self, topic: str, queue_id: int, queue_offset: int, max_count: int = 32,
                max_bytes: int = 4 * MiB, tags: set[str] | None = None) -> RawGetResult:
        """Like get_messages, but a batch record comes back as its verified bytes, whole (see
        RawGetResult): nothing is decoded per message, except the tag column of a batch holding
        several tags when `tags` filters. A batch is never cut by count: the last one may take the
        answer past `max_count` (bytes are what a batch costs here, not messages)."""
        self._check_open()
        w = self._queue_window(topic, queue_id, queue_offset)
        if isinstance(w, GetResult):
            return RawGetResult(w.status, [], w.next_offset, w.min_offset, w.max_offset)
        mn, mx = w
        key = (topic, queue_id)
        hashes = {rc.tag_hash(t) for t in tags} if tags else None
        budget = self.config.max_scan_entries if tags else max_count
        items: list[Any] = []
        size = count = scanned = 0
        nxt = queue_offset
        log_ = self.log
        for qo, phys, sz, th, cnt, is_batch in self._cq_from(topic, queue_id, queue_offset, mx):
            if qo >= mx:
                break
            if items and size + sz > max_bytes:
                break
            scanned += 1
            if phys < log_.min_offset:
                nxt = qo + cnt
                if not items:
                    moved = self._moved(key, queue_offset, mx)
                    if moved is not None:
                        return RawGetResult(moved.status, [], moved.next_offset, moved.min_offset, moved.max_offset)
                continue
            if hashes is not None and th != br.TAG_MIXED and th not in hashes:
                nxt = qo + cnt
            elif is_batch:
                try:
                    magic, buf = log_.read_verified(phys)
                except (IndexError, ValueError):  # expired under us
                    continue
                first = max(qo, queue_offset)
                take = qo + cnt - first  # the rest of the batch: max_count may be passed by the last one
                if tags is not None and th == br.TAG_MIXED:
                    v = br.parse(buf, verify=False)
                    want = {j + 1 for j, t in enumerate(v.tags) if t in tags}
                    idx = v.tag_idx
                    hit = sum(1 for i in range(first - qo, first - qo + take) if idx[i] in want)
                else:
                    hit = take
                nxt = first + take
                if hit:
                    items.append(buf)
                    size += sz
                    count += hit
            else:
                nxt = qo + 1
                try:
                    m = log_.read_record(phys)
                except (IndexError, ValueError):  # expired under us
                    continue
                if tags is None or m.tags in tags:
                    items.append(m)
                    size += sz
                    count += 1
            if count >= max_count or scanned >= budget:
                break
        if scanned == 0:
            nxt = mx
        return RawGetResult(GetStatus.FOUND, items, nxt, mn, mx, count)

    def get_by_physical_offset(self, offset: int) -> Message | None:
        """The record at offset (None outside the log; the first message of a batch record);
        CorruptRecord if it is damaged."""
        ms = self.messages_at(offset)
        return ms[0] if ms else None

    def messages_at(self, offset: int) -> list[Message]:
        """Every message of the record at offset ([] outside the log); CorruptRecord if damaged."""
        self._check_open()
        try:
            magic, buf = self.log.read_verified(offset)
        except (IndexError, ValueError):
            return []
        if magic == rc.MAGIC_BATCH:
            v = br.parse(buf, verify=False)
            return [v.message(i, self.config.store_host) for i in range(v.count)]
        return [rc.decode(buf, 0, len(buf), verify=False)]

    def query_by_key(self, topic: str, key: str, limit: int = 32) -> list[Message]:
        """The newest `limit` messages of topic carrying key, oldest first (a batch's key index
        entry names the batch; its messages are checked one by one)."""
        self._check_open()
        prefix = ix.key_prefix(topic, key)
        out: list[Message] = []
        for k, _ in self.db.scan_reverse(prefix, ix.prefix_end(prefix)):
            if len(out) >= limit:
                break
            phys = int.from_bytes(k[-8:], "big", signed=True)
            ms = self.messages_at(phys) if phys >= self.log.min_offset else []
            for m in reversed(ms):
                if m.topic == topic and key in m.keys and len(out) < limit:
                    out.append(m)
        out.reverse()
        return out

    def query_by_msg_id(self, msg_id: str) -> Message | None:
        self._check_open()
        v = self.db.get(ix.id_key(msg_id))
        phys = ix.unpack_q(v) if v is not None else self._batch_phys_of_id(msg_id)
        if phys is None or phys < self.log.min_offset:
            return None
        for m in self.messages_at(phys):
            if m.msg_id == msg_id:
                return m
        return None

    # ---- metadata ---------------------------------------------------------------------------------

    def put_topic_config(self, topic: str, config: dict[str, Any]) -> PutResult:
        """Create/update a topic config (JSON-able dict); readable when this returns (see meta_wait_s)."""
        names.validate_topic(topic)
        return self._meta_wait(self._append_meta({"op": OP_TOPIC_PUT, "topic": topic, "config": config}))

    def delete_topic(self, topic: str) -> bool:
        """Delete a topic's config, consume queues and consumer offsets; False if it did not exist."""
        names.validate_topic(topic)
        existed = self.get_topic_config(topic) is not None or any(k[0] == topic for k in self.dispatcher.qmax)
        self._meta_wait(self._append_meta({"op": OP_TOPIC_DEL, "topic": topic}))
        return existed

    def get_topic_config(self, topic: str) -> dict[str, Any] | None:
        v = self.db.get(b"t" + topic.encode())
        return None if v is None else json.loads(v)

    def list_topics(self) -> dict[str, dict[str, Any]]:
        return {k[1:].decode(): json.loads(v) for k, v in self.db.scan(b"t")}

    def put_subscription_group(self, group: str, config: dict[str, Any]) -> PutResult:
        names.validate_group(group)
        return self._meta_wait(self._append_meta({"op": OP_GROUP_PUT, "group": group, "config": config}))

    def delete_subscription_group(self, group: str) -> bool:
        """Delete a group and its offsets; False if it did not exist."""
        names.validate_group(group)
        existed = self.get_subscription_group(group) is not None
        self._meta_wait(self._append_meta({"op": OP_GROUP_DEL, "group": group}))
        return existed

    def get_subscription_group(self, group: str) -> dict[str, Any] | None:
        v = self.db.get(b"g" + group.encode())
        return None if v is None else json.loads(v)

    def list_subscription_groups(self) -> dict[str, dict[str, Any]]:
        return {k[1:].decode(): json.loads(v) for k, v in self.db.scan(b"g")}

    def commit_offset(self, group: str, topic: str, queue_id: int, offset: int) -> PutResult:
        """Record a consumer offset (a META record); visible to query_offset at once."""
        names.validate_group(group)
        names.validate_topic(topic)
        if offset < 0 or queue_id < 0:
            raise ValueError("offset and queue_id must be >= 0")
        return self._append_meta({"op": OP_OFFSET, "group": group, "topic": topic, "queue_id": queue_id,
                                  "offset": offset})

    def query_offset(self, group: str, topic: str, queue_id: int) -> int | None:
        v = self._offsets_overlay.get((group, topic, queue_id))
        if v is not None:
            return v
        b = self.db.get(ix.offset_key(group, topic, queue_id))
        return None if b is None else ix.unpack_q(b)

    def offsets_of_group(self, group: str) -> dict[tuple[str, int], int]:
        out = {}
        for k, v in self.db.scan(b"o" + group.encode() + b"\x00"):
            _, t, q = ix.parse_offset_key(k)
            out[(t, q)] = ix.unpack_q(v)
        for (g, t, q), off in list(self._offsets_overlay.items()):
            if g == group:
                out[(t, q)] = off
        return out

    def _meta_state_now(self) -> dict[str, Any]:
        """Metadata as of the end of the log (append lock held): the tables + undispatched META."""
        with self.dispatcher.lock:
            state = self.db.meta_state()
            start = self.dispatcher.dispatched
        for _off, magic, buf in self.log.records(start):
            if magic == rc.MAGIC_META:
                *_, body = parse_index_fields(buf)   # a META record's body is its op (JSON)
                state = apply_meta(state, json.loads(body))
        return state

    def append_meta_snapshot(self) -> PutResult:
        """Write the whole metadata as one META record (waits for it to be dispatched)."""
        self._check_open()
        with self._lock:
            self._check_local_write("metadata snapshot")
            state = self._meta_state_now()
        op = {"op": OP_SNAPSHOT, **state}
        return self._meta_wait(self._append_meta(op))

    # ---- replication ------------------------------------------------------------------------------

    @property
    def max_physical_offset(self) -> int:
        return self.log.max_offset

    @property
    def min_physical_offset(self) -> int:
        return self.log.min_offset

    def read_raw(self, start: int, max_bytes: int) -> bytes:
        """Whole records from start (a record boundary), at most max_bytes (b"" if the first is larger)."""
        self._check_open()
        return self.log.read_raw(start, max_bytes)

    def append_raw(self, start: int, data: bytes) -> int:
        """Append replicated records as-is (validated first); returns the new max offset."""
        self._check_open()
        with self._lock:
            if not self._opened:
                raise StoreClosed("the store is closed")
            g = self._gate
            if g is not None and g():
                raise LocalWriteRefused("replicated bytes refused: this replica is master")
            recs = self.log.append_raw(start, data)
            nxt = self._next
            mv = memoryview(data)
            unpack = rc.HEADER.unpack_from
            hs = rc.HEADER_SIZE
            topics: dict[bytes, str] = {}
            for off, _size, magic in recs:
                if magic == rc.MAGIC_BLANK:
                    continue
                rel = off - start
                if magic == rc.MAGIC_BATCH:
                    h = br.header(mv, rel)
                    tb = bytes(mv[rel + br.HEADER_SIZE:rel + br.HEADER_SIZE + h[br.B_TOPIC_LEN]])
                    topic = topics.get(tb)
                    if topic is None:
                        topic = topics[tb] = tb.decode()
                    key = (topic, h[br.B_QUEUE_ID])
                    end = h[br.B_BASE] + h[br.B_COUNT]
                    if end > nxt.get(key, 0):
                        nxt[key] = end
                elif magic == rc.MAGIC_MESSAGE:
                    # only the queue's next offset is needed here: header + topic, not the properties
                    h = unpack(mv, rel)
                    tb = bytes(mv[rel + hs:rel + hs + h[rc.H_TOPIC_LEN]])
                    topic = topics.get(tb)
                    if topic is None:
                        topic = topics[tb] = tb.decode()
                    key = (topic, h[rc.H_QUEUE_ID])
                    if h[rc.H_QUEUE_OFFSET] + 1 > nxt.get(key, 0):
                        nxt[key] = h[rc.H_QUEUE_OFFSET] + 1
                else:
                    *_, body = parse_index_fields(mv[rel:rel + _size])
                    self._meta_appended(json.loads(body))
            end = self._raw_end = self.log.max_offset
        if self._auto_confirm:
            self.dispatcher.wake()
        return end

    def truncate(self, offset: int) -> None:
        """Cut the commitlog and every index at `offset` (a record boundary), durably."""
        self._check_open()
        with self._lock, self.dispatcher.lock:
            if not self._opened:
                raise StoreClosed("the store is closed")
            marker = os.path.join(self.dir, TRUNCATING)
            with open(marker, "w") as f:
                f.write(str(offset))
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self.dir)
            self.dispatcher.hints.clear()
            self._truncate_locked(offset)
        self.flusher.reset(self.log.max_offset)

    def start_log_at(self, offset: int) -> None:
        """Drop everything this store holds (log, indexes, metadata) and continue as an empty log
        whose next record goes at `offset`: a replica joining a master whose log no longer starts
        at 0 (expired segments) copies from the master's first retained offset. The metadata then
        comes with the master's bytes: every expired segment that held META records is covered by
        a snapshot record the master wrote at or after `offset`, and the dispatcher applies the
        META records in order from there. Refused on a master (the gate). Durable: a `RESTARTING`
        marker makes a crash mid-way finish the job on the next open."""
        self._check_open()
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        with self._lock, self.dispatcher.lock:
            if not self._opened:
                raise StoreClosed("the store is closed")
            g = self._gate
            if g is not None and g():
                raise LocalWriteRefused("starting an empty log refused: this replica is master")
            marker = os.path.join(self.dir, RESTARTING)
            with open(marker, "w") as f:
                f.write(str(offset))
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self.dir)
            self._start_at_locked(offset)
        self.flusher.reset(offset)
        self.dispatcher.wake()

    def _start_at_locked(self, offset: int) -> None:
        """The index first (emptied, checkpoint = offset), then the log, then the marker."""
        self.dispatcher.cq_tail.clear()
        wb = self.db.batch()
        wb.delete_range(b"\x00", b"\xff\xff")
        wb.put(ix.CHECKPOINT, ix.pack_q(offset))
        self.db.write(wb, sync=True)
        d = self.dispatcher
        with d._cond:
            d.dispatched = offset
        d.qmax.clear()
        d.qmin.clear()
        self.log.start_at(offset)
        marker = os.path.join(self.dir, RESTARTING)
        if os.path.exists(marker):
            os.unlink(marker)
            fsync_dir(self.dir)
        self._next = {}
        self._offsets_overlay = {}
        self._confirm = offset
        self._recent = dedup.RecentBatches()
        self._expiry_snapshot = None
        self._raw_end = offset
        self._tail_scanned = offset
        log.warning("store emptied: the log now starts at %d", offset)

    def _truncate_locked(self, offset: int) -> None:
        """Index first (from the records still in the log), then the log, then the marker."""
        d = self.dispatcher
        log_ = self.log
        offset = max(offset, log_.min_offset)
        d.cq_tail.clear()      # (its entries past `offset` go from the index below)
        if offset < d.dispatched:
            wb = self.db.batch()
            new_qmax: dict[tuple[str, int], int] = {}
            meta_hit = False
            for off, magic, buf in log_.records(offset, d.dispatched):
                if magic == rc.MAGIC_BLANK:
                    continue
                if magic == rc.MAGIC_BATCH:
                    qid, base, _n, _s, topic, _th, keys, ids, prefix, first, _ts = parse_batch_fields(buf)
                    wb.delete(ix.cq_key(topic, qid, base))
                    for k in keys:
                        wb.delete(ix.key_key(topic, k, off))
                    for mid in ids or ():
                        v = self.db.get(ix.id_key(mid))
                        if v is not None and ix.unpack_q(v) >= offset:
                            wb.delete(ix.id_key(mid))
                    if ids is None:
                        wb.delete(ix.batch_id_key(prefix, first))
                    key = (topic, qid)
                    if key in d.qmax and base < new_qmax.get(key, d.qmax[key]):
                        new_qmax[key] = base
                    continue
                m, qid, qoff, _total, topic, _tags, keys, msg_id, _body = parse_index_fields(buf)
                if m == rc.MAGIC_META:
                    meta_hit = True
                    wb.delete(ix.meta_key(off))
                    continue
                wb.delete(ix.cq_key(topic, qid, qoff))
                for k in keys:
                    wb.delete(ix.key_key(topic, k, off))
                if msg_id:
                    v = self.db.get(ix.id_key(msg_id))
                    if v is not None and ix.unpack_q(v) >= offset:
                        wb.delete(ix.id_key(msg_id))
                key = (topic, qid)
                if key in d.qmax and qoff < new_qmax.get(key, d.qmax[key]):
                    new_qmax[key] = qoff
            if meta_hit:
                state, snap = self._replay_meta_before(offset)
                self.db.write_meta_state(wb, state)
                if snap is None:
                    wb.delete(ix.LAST_SNAPSHOT)
                else:
                    wb.put(ix.LAST_SNAPSHOT, ix.pack_q(snap))
            for key, v in new_qmax.items():
                wb.put(ix.qmax_key(*key), ix.pack_q(v))
            wb.put(ix.CHECKPOINT, ix.pack_q(offset))
            self.db.write(wb, sync=True)
            d.qmax.update(new_qmax)
            d.dispatched = offset
        log_.truncate(offset)
        marker = os.path.join(self.dir, TRUNCATING)
        if os.path.exists(marker):
            os.unlink(marker)
            fsync_dir(self.dir)
        self._confirm = min(self._confirm, log_.max_offset)
        self._recent.cut(log_.max_offset)
        self._expiry_snapshot = None
        self._raw_end = min(self._raw_end, log_.max_offset)
        self._tail_scanned = min(self._tail_scanned, log_.max_offset)
        self._offsets_overlay = {}
        self._rebuild_next()
        log.warning("truncated to %d (dispatched %d)", log_.max_offset, d.dispatched)

    def _replay_meta_before(self, offset: int) -> tuple[dict[str, Any], int | None]:
        """Metadata as of `offset`: the last snapshot before it + the META records after that snapshot."""
        offs: list[int] = []
        snap = None
        for k, v in self.db.scan_reverse(b"M", ix.meta_key(offset)):
            off = int.from_bytes(k[1:], "big", signed=True)
            offs.append(off)
            if v == b"S":
                snap = off
                break
        state = empty_meta()
        for off in reversed(offs):
            m = self.log.read_record(off)
            state = apply_meta(state, json.loads(m.body))
        return state, snap

    # ---- expiry -----------------------------------------------------------------------------------

    def _expiry_loop(self) -> None:
        while not self._expiry_stop.wait(self.config.expiry_interval_s):
            try:
                self.expire()
            except Exception:  # noqa: BLE001 - keep the broker up; say why
                log.exception("expiry failed")

    def disk_usage(self) -> tuple[int, int]:
        st = os.statvfs(self.dir)
        total = st.f_blocks * st.f_frsize
        return total - st.f_bfree * st.f_frsize, total

    def expire(self, now: float | None = None, disk_usage: tuple[int, int] | None = None) -> int:
        """Delete expired segments (retention or disk ratio); returns how many were deleted."""
        self._check_open()
        now = time.time() if now is None else now
        used, total = disk_usage if disk_usage is not None else self.disk_usage()
        infos = []
        for s in list(self.log.segments):
            st = os.stat(s.path)
            infos.append(ex.SegmentInfo(s.base, s.end, st.st_mtime, st.st_blocks * 512))
        safe = min(self.dispatcher.dispatched, self.flusher.flushed)
        floor = self._retention_floor() if self._retention_floor is not None else None
        n = ex.segments_to_expire(infos, now, self.config.retention_hours * 3600, used, total,
                                  self.config.disk_max_ratio, safe, keep_from=floor)
        done = 0
        for _ in range(n):
            if not self._delete_oldest():
                break
            done += 1
        return done

    def _delete_oldest(self) -> bool:
        seg = self.log.segments[0]
        base, end = seg.base, seg.end
        first_meta = next(iter(self.db.scan(b"M", ix.meta_key(base))), None)
        if first_meta is not None and first_meta[0] < ix.meta_key(end):
            v = self.db.get(ix.LAST_SNAPSHOT)
            if v is None or ix.unpack_q(v) < end:
                if not self.may_write_locally():
                    # a follower never writes its own snapshot: it waits for the master's (the
                    # master writes one before it expires this segment, and it replicates here)
                    if self._kept_logged != base:
                        self._kept_logged = base
                        log.info("segment %s kept until a metadata snapshot from the master covers it", seg.path)
                    return False
                pending = self._expiry_snapshot
                if pending is not None and end <= pending[0] and pending[1] <= self.log.max_offset:
                    snap_end = pending[1]  # written by an earlier pass, not confirmed yet: no second one
                else:
                    try:
                        r = self.append_meta_snapshot()
                    except LocalWriteRefused:
                        return False  # stopped being master meanwhile
                    self._expiry_snapshot = (r.physical_offset, r.end_offset)
                    snap_end = r.end_offset
                if not self.dispatcher.wait_dispatched(snap_end, self.config.meta_wait_s):
                    log.warning("segment %s kept: its metadata snapshot is not dispatched yet", seg.path)
                    return False
                v = self.db.get(ix.LAST_SNAPSHOT)
                if v is None or ix.unpack_q(v) < end:  # that snapshot was truncated away: write another
                    self._expiry_snapshot = None
                    return False
        with self.dispatcher.lock:
            if not self._opened:   # close() may have recorded the segments in its checkpoint
                return False
            d = self.dispatcher
            d.cq_tail.clear()    # (entries of the expiring segment leave the index below)
            wb = self.db.batch()
            for key in list(d.qmax):
                mx = d.qmax[key]
                newmin = d.qmin.get(key, 0)
                for k, v in self.db.scan(ix.cq_prefix(*key), ix.cq_key(key[0], key[1], newmin)):
                    phys, _sz, _th, cnt = ix.cq_unpack(v)
                    if phys >= end:
                        break
                    wb.delete(k)
                    newmin = int.from_bytes(k[-8:], "big", signed=True) + cnt
                newmin = min(newmin, mx)
                if newmin != d.qmin.get(key, 0):
                    wb.put(ix.qmin_key(*key), ix.pack_q(newmin))
                    d.qmin[key] = newmin
            wb.delete_range(ix.meta_key(0), ix.meta_key(end))
            self.db.write(wb, sync=True)
            self.log.delete_oldest()
        log.info("expired segment %s [%d, %d)", seg.path, base, end)
        return True

    # ---- introspection ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        d = self.dispatcher
        return {"max_physical_offset": self.log.max_offset, "min_physical_offset": self.log.min_offset,
                "confirm_offset": self.confirm_offset, "dispatched_offset": d.dispatched,
                "flushed_offset": self.flusher.flushed, "flushes": self.flusher.flushes,
                "segments": len(self.log.segments), "dispatch_error": str(d.error) if d.error else "",
                "recovery": self.recovery["path"], "recovery_s": self.recovery["seconds"],
                "recovery_log_end_s": self.recovery["log_end_s"],
                "recovery_reason": self.recovery["reason"], "recovery_tail_bytes": self.recovery["tail_bytes"],
                "flush_error": str(self.flusher.error) if self.flusher.error else ""}

    def verify(self) -> list[CorruptRecord]:
        """Scan the whole log; every corrupt record found (the scan resyncs by the stored size)."""
        out: list[CorruptRecord] = []
        for seg in list(self.log.segments):
            pos = seg.base
            end = min(seg.end, self.log.max_offset)
            while pos < end:
                rel = pos - seg.base
                size = rc.peek_size(seg.mm, rel) if end - pos >= rc.BLANK_MIN else 0
                try:
                    rc.check(seg.mm, rel, end - seg.base, expect_offset=pos)
                except rc.CodecError as e:
                    out.append(CorruptRecord(seg.path, pos, e.reason))
                    if size < rc.BLANK_MIN or pos + size > end:
                        break
                pos += size
        return out
