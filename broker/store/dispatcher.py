"""The dispatcher: follows the commitlog up to the confirm offset and builds every index from it.

Owns: turning records into index entries (consume queue, key and id index, queue ends) and META
records into metadata table changes, one rocksdict WriteBatch per round that also carries the
dispatch checkpoint (so a restart resumes with neither duplicates nor gaps), the in-memory queue
end/min tables readers use, and notifying listeners (long polling) of the queues that grew.
`apply_meta` (pure, on a plain dict) is also how truncation and snapshots replay metadata.
It never appends to the commitlog.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store import index_store as ix
from orbitmq.broker.store import record as rc
from orbitmq.broker.store.cq_tail import CqTail
from orbitmq.broker.store.errors import CorruptRecord

log = logging.getLogger("orbitmq.broker.store.dispatcher")

QueueKey = tuple[str, int]

# META operations (the JSON body's "op")
OP_TOPIC_PUT = "topic_put"
OP_TOPIC_DEL = "topic_del"
OP_GROUP_PUT = "group_put"
OP_GROUP_DEL = "group_del"
OP_OFFSET = "offset"
OP_SNAPSHOT = "snapshot"
OPS = (OP_TOPIC_PUT, OP_TOPIC_DEL, OP_GROUP_PUT, OP_GROUP_DEL, OP_OFFSET, OP_SNAPSHOT)
# run_held(): a round on the caller's thread that took longer than this (wall time: a stalled index
# write sleeps; a preempted round on a loaded machine can count too, then only the speed-up pauses)
# leaves the next INLINE_BACKOFF_S of rounds to the dispatcher thread
INLINE_SLOW_S = 0.02
INLINE_BACKOFF_S = 1.0
# Extension META records (pop state, ...): ops named "x.<kind>" are not metadata tables; the
# dispatcher hands them to `Dispatcher.ext_hook(write_batch, op, offset)` in its round's batch.
EXT_OP_PREFIX = "x."


def empty_meta() -> dict[str, Any]:
    return {"topics": {}, "groups": {}, "offsets": []}


def apply_meta(state: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    """Apply one META operation to a metadata state (pure; returns the new state)."""
    kind = op["op"]
    if kind.startswith(EXT_OP_PREFIX):
        return state
    if kind == OP_SNAPSHOT:
        return {"topics": dict(op["topics"]), "groups": dict(op["groups"]),
                "offsets": [list(x) for x in op["offsets"]]}
    topics, groups = dict(state["topics"]), dict(state["groups"])
    offsets = {(g, t, q): o for g, t, q, o in state["offsets"]}
    if kind == OP_TOPIC_PUT:
        topics[op["topic"]] = op["config"]
    elif kind == OP_TOPIC_DEL:
        topics.pop(op["topic"], None)
        offsets = {k: v for k, v in offsets.items() if k[1] != op["topic"]}
    elif kind == OP_GROUP_PUT:
        groups[op["group"]] = op["config"]
    elif kind == OP_GROUP_DEL:
        groups.pop(op["group"], None)
        offsets = {k: v for k, v in offsets.items() if k[0] != op["group"]}
    elif kind == OP_OFFSET:
        offsets[(op["group"], op["topic"], op["queue_id"])] = op["offset"]
    else:
        raise ValueError(f"unknown META op {kind!r}")
    return {"topics": topics, "groups": groups, "offsets": [[g, t, q, o] for (g, t, q), o in sorted(offsets.items())]}


def parse_index_fields(buf) -> tuple:
    """(magic, queue_id, queue_offset, size, topic, tags, keys, msg_id, body_or_None) of a verified record."""
    h = rc.HEADER.unpack_from(buf, 0)
    magic, total = h[rc.H_MAGIC], h[rc.H_TOTAL]
    p = rc.HEADER_SIZE
    topic = bytes(buf[p:p + h[rc.H_TOPIC_LEN]]).decode()
    p += h[rc.H_TOPIC_LEN] + h[rc.H_BORN_HOST_LEN] + h[rc.H_STORE_HOST_LEN]
    if magic == rc.MAGIC_META:
        body = bytes(buf[p + h[rc.H_PROPS_LEN]:p + h[rc.H_PROPS_LEN] + h[rc.H_BODY_LEN]])
        return magic, h[rc.H_QUEUE_ID], h[rc.H_QUEUE_OFFSET], total, topic, "", (), "", body
    tags, keys, msg_id = "", (), ""
    if h[rc.H_PROPS_LEN]:
        props = bytes(buf[p:p + h[rc.H_PROPS_LEN]])
        if b"TAGS\x01" in props or b"KEYS\x01" in props or b"UNIQ_KEY\x01" in props:
            d = rc.decode_properties(props)
            tags = d.get(rc.PROP_TAGS, "")
            ks = d.get(rc.PROP_KEYS, "")
            keys = ks.split() if ks else ()
            msg_id = d.get(rc.PROP_UNIQ, "")
    return magic, h[rc.H_QUEUE_ID], h[rc.H_QUEUE_OFFSET], total, topic, tags, keys, msg_id, None


def parse_batch_fields(buf, read_full: Callable[[], bytes] | None = None) -> tuple:
    """(queue_id, base queue offset, count, size, topic, tag hash, keys, explicit ids or None, id
    prefix, first id counter, store_ts) of a verified batch record, or of its meta part alone
    (CommitLog.records(batch_meta=True)); the message data is needed only for batches with explicit
    ids (their UNIQ_KEYs): then `read_full()` gives the whole record when `buf` is its meta part."""
    h = br.header(buf)
    tl = h[br.B_TOPIC_LEN]
    topic = bytes(buf[br.HEADER_SIZE:br.HEADER_SIZE + tl]).decode()
    explicit = h[br.B_FLAGS] & br.FLAG_IDS_EXPLICIT
    keys: list[str] = []
    th = 0
    ids = None
    prefix = ""
    if explicit and len(buf) < h[br.B_TOTAL]:
        if read_full is None:
            raise ValueError("a batch with explicit ids needs its whole record to be indexed")
        buf = read_full()
    if h[br.B_NTAGS] or h[br.B_NKEYS] or explicit:
        v = br.parse(buf, verify=False, meta_only=len(buf) < h[br.B_TOTAL])
        keys = v.keys
        u = v.uniform_tag()
        th = br.TAG_MIXED if u is None else rc.tag_hash(u)
        prefix = v.id_prefix
        if explicit:
            ids = v.msg_ids()
    else:
        p = br.HEADER_SIZE + tl + h[br.B_BORN_HOST_LEN]
        prefix = bytes(buf[p:p + h[br.B_ID_PREFIX_LEN]]).decode()
    return (h[br.B_QUEUE_ID], h[br.B_BASE], h[br.B_COUNT], h[br.B_TOTAL], topic, th, keys, ids, prefix,
            h[br.B_ID_FIRST], h[br.B_STORE_TS])


def _index_message(wb: Any, qmax: dict, known_qmax: dict, qmin_new: dict, changed: set, fresh: list, off: int,
                   total: int, topic: str, qid: int, qoff: int, tag_hash: int, keys: Any, msg_id: str) -> None:
    """Index one one-message record at `off` in the round's write batch: its consume queue entry
    (also added to `fresh`, for the tail cache), keys and id, and the queue's new max (and min,
    for a queue seen for the first time)."""
    key = (topic, qid)
    wb.put(ix.cq_key(topic, qid, qoff), ix.CQ_VALUE.pack(off, total, tag_hash))
    fresh.append((key, (qoff, off, total, tag_hash, 1, False)))
    for k in keys:
        wb.put(ix.key_key(topic, k, off), b"")
    if msg_id:
        wb.put(ix.id_key(msg_id), ix.pack_q(off))
    cur = qmax.get(key)
    if cur is None:
        cur = known_qmax.get(key)
        if cur is None and key not in qmin_new:
            qmin_new[key] = qoff
    if cur is None or qoff + 1 > cur:
        qmax[key] = qoff + 1
    changed.add(key)


class Dispatcher:
    """Builds the indexes of `log` into `db` up to `confirm_fn()`; see the module docstring."""

    def __init__(self, log_: Any, db: ix.IndexStore, confirm_fn: Callable[[], int], batch_bytes: int = 4 << 20) -> None:
        self.log = log_
        self.db = db
        self.confirm_fn = confirm_fn
        self.batch_bytes = batch_bytes
        self.lock = threading.Lock()  # held while a round runs; truncation/expiry/snapshots take it
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self.idle = True
        self.dispatched = 0
        self.qmax: dict[QueueKey, int] = {}
        self.qmin: dict[QueueKey, int] = {}
        self.listeners: list[Callable[[set[QueueKey]], None]] = []
        # after topic configs changed: called with the changed names, or None after a snapshot (all may have)
        self.topic_listeners: list[Callable[[set[str] | None], None]] = []
        self.ext_hook: Callable[[Any, dict, int], None] | None = None  # see EXT_OP_PREFIX
        self.error: CorruptRecord | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.records_dispatched = 0
        self.corrupt_skipped = 0
        self.inline_rounds = 0          # rounds run by a thread that held its wakes (run_held)
        self._holder = 0                # thread id whose wake() calls are held (see hold_wakes)
        self._held = False
        self._inline_off_until = 0.0    # run_held() leaves rounds to the thread until then (monotonic)
        # what the store's own appends already know of their one-message records, by offset:
        # (crc, size, topic, queue id, queue offset, tag hash, keys, msg_id); a round uses a hint
        # only for the record whose stored crc, size and magic it matches (else it reads the log)
        self.hints: dict[int, tuple] = {}
        self.hinted = 0
        # the newest consume queue entries per queue (cq_tail.py); whoever deletes or rewrites index
        # entries (truncation, expiry, topic deletion, an emptied store) clears what it covers first
        self.cq_tail = CqTail()

    # ---- state ------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the checkpoint and queue tables (a missing checkpoint: rebuild from the log start)."""
        cp = self.db.checkpoint()
        self.cq_tail.clear()
        self.dispatched = self.log.min_offset if cp is None else cp
        self.qmax = {ix.parse_queue_key(k): ix.unpack_q(v) for k, v in self.db.scan(b"Q")}
        self.qmin = {ix.parse_queue_key(k): ix.unpack_q(v) for k, v in self.db.scan(b"N")}
        if self.dispatched < self.log.min_offset:
            log.warning("dispatch checkpoint %d below the log start %d: skipping the expired range",
                        self.dispatched, self.log.min_offset)
            self.dispatched = self.log.min_offset

    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="orbitmq-dispatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wake(self) -> None:
        if self._holder and self._holder == threading.get_ident():
            self._held = True       # the holding thread dispatches (or wakes us) in run_held()
            return
        if self.idle:
            self._wake.set()

    def hold_wakes(self) -> None:
        """From now until `run_held()`, wake() calls made by this thread are held, not passed to the
        dispatcher thread (one thread at a time: the broker's event loop around a read of requests)."""
        self._holder = threading.get_ident()

    def run_held(self, max_bytes: int = 64 * 1024) -> None:
        """End hold_wakes(). If a wake was held: run the dispatch round here when the dispatcher is
        idle and at most `max_bytes` wait (a one-at-a-time send then costs no thread wake-up and GIL
        hand-off), otherwise wake the dispatcher thread as wake() would have."""
        self._holder = 0
        if not self._held:
            return
        self._held = False
        done = False
        if self.idle and not self._stop and self.error is None and self.lock.acquire(blocking=False):
            try:
                t0 = time.monotonic()
                if t0 >= self._inline_off_until and \
                        min(self.confirm_fn(), self.log.max_offset) - self.dispatched <= max_bytes:
                    self.dispatch_once()
                    self.inline_rounds += 1
                    done = True
                    if time.monotonic() - t0 > INLINE_SLOW_S:
                        # a slow round (a stalled index write, a loaded machine) must not hold the
                        # caller's thread (the broker's event loop) again soon: the thread does it
                        self._inline_off_until = time.monotonic() + INLINE_BACKOFF_S
            except Exception:  # noqa: BLE001 - the dispatcher thread meets it again, logs and handles it
                done = False
            finally:
                self.lock.release()
        if not done:
            self._wake.set()

    def wait_dispatched(self, end: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.dispatched >= end or self._stop, timeout) and \
                self.dispatched >= end

    # ---- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop:
            try:
                with self.lock:
                    n = self.dispatch_once()
            except CorruptRecord as e:
                if self.error is None or self.error.offset != e.offset:
                    log.error("dispatch stopped at a corrupt record: %s", e)
                self.error = e
                n = 0
                self._wake.wait(1.0)
            except Exception:  # noqa: BLE001 - keep dispatching after an unexpected error, loudly
                log.exception("dispatch round failed")
                n = 0
                self._wake.wait(0.5)
            if n == 0:
                self.idle = True
                self._wake.wait(0.05)
                self._wake.clear()
                self.idle = False

    def dispatch_once(self) -> int:
        """One round up to the confirm offset (caller holds `lock`); returns records dispatched."""
        target = min(self.confirm_fn(), self.log.max_offset)
        start = self.dispatched
        if start >= target:
            return 0
        db = self.db
        wb = db.batch()
        qmax = dict()
        qmin_new: dict[QueueKey, int] = {}
        changed: set[QueueKey] = set()
        fresh: list[tuple[QueueKey, tuple]] = []    # the round's consume queue entries (cq_tail.py)
        pos = start
        n = 0
        limit = self.batch_bytes
        known_qmax = self.qmax
        topics_changed: set[str] | None = set()
        hints = self.hints
        if hints:
            # the store's own one-message appends: their index fields as the append knew them
            prefix_at = self.log.prefix_at
            while pos < target and pos - start < limit:
                h = hints.pop(pos, None)
                if h is None:
                    break
                crc, total, topic, qid, qoff, th, keys, msg_id = h
                if pos + total > target:
                    hints[pos] = h   # for a later round
                    break
                if prefix_at(pos) != (crc, total, rc.MAGIC_MESSAGE):
                    break    # not the bytes the hint was made for (e.g. truncated and rewritten): read them
                _index_message(wb, qmax, known_qmax, qmin_new, changed, fresh, pos, total, topic, qid, qoff, th,
                               keys, msg_id)
                pos += total
                n += 1
            self.hinted += n
        for off, magic, buf in self.log.records(pos, target if pos - start < limit else pos, self._on_corrupt,
                                                batch_meta=True):
            total = len(buf)
            if magic == rc.MAGIC_BLANK:
                pos = off + total
                continue
            if magic == rc.MAGIC_BATCH:
                qid, base, cnt, total, topic, th, keys, ids, prefix, first, _ts = parse_batch_fields(
                    buf, lambda o=off: self.log.read_verified(o)[1])
                key = (topic, qid)
                wb.put(ix.cq_key(topic, qid, base), ix.CQ_BATCH.pack(off, total, th, cnt))
                fresh.append((key, (base, off, total, th, cnt, True)))
                for k in keys:
                    wb.put(ix.key_key(topic, k, off), b"")
                if ids is not None:
                    v = ix.pack_q(off)
                    for mid in ids:
                        wb.put(ix.id_key(mid), v)
                else:
                    wb.put(ix.batch_id_key(prefix, first), ix.pack_q(off))
                cur = qmax.get(key)
                if cur is None:
                    cur = known_qmax.get(key)
                    if cur is None and key not in qmin_new:
                        qmin_new[key] = base
                if cur is None or base + cnt > cur:
                    qmax[key] = base + cnt
                changed.add(key)
                pos = off + total
                n += 1
                if pos - start >= limit:
                    break
                continue
            magic, qid, qoff, total, topic, tags, keys, msg_id, body = parse_index_fields(buf)
            if magic == rc.MAGIC_META:
                op = json.loads(body)
                kind = op.get("op")
                if kind == OP_SNAPSHOT:
                    topics_changed = None
                elif kind in (OP_TOPIC_PUT, OP_TOPIC_DEL) and topics_changed is not None:
                    topics_changed.add(op["topic"])
                if kind in (OP_TOPIC_DEL, OP_SNAPSHOT, OP_GROUP_DEL):
                    # these read committed tables: commit what we have first
                    self._commit(wb, off, qmax, qmin_new, changed, fresh)
                    wb, qmax, qmin_new, changed, fresh = db.batch(), {}, {}, set(), []
                    self._apply_heavy(op, off, off + total)
                    pos = off + total
                    n += 1
                    continue
                if kind.startswith(EXT_OP_PREFIX):
                    if self.ext_hook is not None:
                        self.ext_hook(wb, op, off)
                else:
                    self._apply_light(wb, op)
                    wb.put(ix.meta_key(off), b"m")
            else:
                _index_message(wb, qmax, known_qmax, qmin_new, changed, fresh, off, total, topic, qid, qoff,
                               rc.tag_hash(tags), keys, msg_id)
            pos = off + total
            n += 1
            if pos - start >= limit:
                break
        self._commit(wb, pos, qmax, qmin_new, changed, fresh)
        self.records_dispatched += n
        if topics_changed is None or topics_changed:
            for fn in self.topic_listeners:
                try:
                    fn(topics_changed)
                except Exception:  # noqa: BLE001 - a listener must not stop dispatching
                    log.exception("topic listener failed")
        return n

    def _on_corrupt(self, e: CorruptRecord) -> None:
        if self.error is None or self.error.offset != e.offset:
            log.error("skipping a corrupt record (its message is lost to consumers): %s", e)
        self.error = e
        self.corrupt_skipped += 1

    def _commit(self, wb, pos: int, qmax: dict, qmin_new: dict, changed: set, fresh: list) -> None:
        for key, v in qmax.items():
            wb.put(ix.qmax_key(*key), ix.pack_q(v))
        for key, v in qmin_new.items():
            if key not in self.qmin:
                wb.put(ix.qmin_key(*key), ix.pack_q(v))
        wb.put(ix.CHECKPOINT, ix.pack_q(pos))
        self.db.write(wb)
        if fresh:
            self.cq_tail.add(fresh)   # (before the queue ends move: a reader that sees them finds these)
        self.qmax.update(qmax)
        for key, v in qmin_new.items():
            self.qmin.setdefault(key, v)
        self.rounds += 1
        with self._cond:
            self.dispatched = pos
            self._cond.notify_all()
        if changed:
            for fn in self.listeners:
                try:
                    fn(changed)
                except Exception:  # noqa: BLE001 - a listener must not stop dispatching
                    log.exception("dispatch listener failed")

    @staticmethod
    def _apply_light(wb, op: dict) -> None:
        kind = op["op"]
        if kind == OP_TOPIC_PUT:
            wb.put(b"t" + op["topic"].encode(), json.dumps(op["config"], sort_keys=True).encode())
        elif kind == OP_GROUP_PUT:
            wb.put(b"g" + op["group"].encode(), json.dumps(op["config"], sort_keys=True).encode())
        elif kind == OP_OFFSET:
            wb.put(ix.offset_key(op["group"], op["topic"], op["queue_id"]), ix.pack_q(op["offset"]))
        else:
            log.error("unknown META op %r ignored", kind)

    def _apply_heavy(self, op: dict, off: int, end: int) -> None:
        """topic/group deletion and snapshots: one batch of their own, checkpoint `end`."""
        db = self.db
        wb = db.batch()
        kind = op["op"]
        dropped: list[QueueKey] = []
        if kind == OP_SNAPSHOT:
            db.write_meta_state(wb, apply_meta(empty_meta(), op))
            wb.put(ix.meta_key(off), b"S")
            wb.put(ix.LAST_SNAPSHOT, ix.pack_q(off))
        else:
            state = apply_meta(db.meta_state(), op)
            db.write_meta_state(wb, state)
            wb.put(ix.meta_key(off), b"m")
            if kind == OP_TOPIC_DEL:
                t = op["topic"]
                self.cq_tail.drop_topic(t)
                for p in (b"c", b"Q", b"N", b"k"):
                    pre = p + t.encode() + b"\x00"
                    wb.delete_range(pre, ix.prefix_end(pre))
                dropped = [k for k in self.qmax if k[0] == t]
        wb.put(ix.CHECKPOINT, ix.pack_q(end))
        db.write(wb)
        for k in dropped:
            self.qmax.pop(k, None)
            self.qmin.pop(k, None)
        self.rounds += 1
        with self._cond:
            self.dispatched = end
            self._cond.notify_all()
