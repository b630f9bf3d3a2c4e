"""The index database: one rocksdict (raw bytes mode) per store, tables told apart by key prefixes.

Owns: key/value layouts and small read helpers. Writes go through `WriteBatch`es built by the
dispatcher (dispatcher.py) or the store's truncation/expiry, always together with the dispatch
checkpoint so the tables never disagree with it. It never reads the commitlog.

    c topic \\0 qid(>i) qoff(>q)   -> phys(<q) size(<I) tag hash(<I)      consume queue entry (one record)
                                  [+ count(<I)]                         a batch: base offset qoff, count
                                                                        messages (tag hash TAG_MIXED:
                                                                        several tags, filter per message)
    Q topic \\0 qid(>i)            -> next queue offset (<q)               consume queue end
    N topic \\0 qid(>i)            -> min queue offset (<q)                after expiry
    k topic \\0 key \\0 phys(>q)    -> b""                                  message key index
    i msg_id                       -> phys(<q)                             message id index
    j id prefix \\0 counter(>Q)     -> phys(<q)                             batch with compact ids from counter
    o group \\0 topic \\0 qid(>i)   -> offset(<q)                           consumer offsets
    t topic                        -> JSON                                 topic configs
    g group                        -> JSON                                 subscription groups
    M phys(>q)                     -> b"S" snapshot / b"m" other META       where META records are
    \\0checkpoint                   -> dispatched up to (<q)
    \\0snapshot                     -> offset of the last dispatched snapshot record (<q)
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterator
from typing import Any

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from orbitmq.broker.store.errors import StoreError

CHECKPOINT = b"\x00checkpoint"
LAST_SNAPSHOT = b"\x00snapshot"
_Q = struct.Struct("<q")
_QID = struct.Struct(">i")
_QOFF = struct.Struct(">iq")
_PHYS_BE = struct.Struct(">q")
CQ_VALUE = struct.Struct("<qII")
CQ_BATCH = struct.Struct("<qIII")
_CQ_COUNT = struct.Struct("<I")
_COUNTER = struct.Struct(">Q")


def _forward(it: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) from where the iterator stands, while keys start with prefix."""
    while it.valid():
        k = it.key()
        if not k.startswith(prefix):
            return
        yield k, it.value()
        it.next()


def cq_unpack(v: bytes) -> tuple[int, int, int, int]:
    """(physical offset, size, tag hash, message count) of a consume queue entry (count 1 for a
    one-message record, as an old-format log has)."""
    phys, size, th = CQ_VALUE.unpack_from(v)
    return phys, size, th, (_CQ_COUNT.unpack_from(v, 16)[0] if len(v) >= 20 else 1)


def batch_id_key(prefix: str, counter: int) -> bytes:
    return b"j" + prefix.encode() + b"\x00" + _COUNTER.pack(counter)


def batch_id_prefix(prefix: str) -> bytes:
    return b"j" + prefix.encode() + b"\x00"


def _t(topic: str) -> bytes:
    return topic.encode() + b"\x00"


def cq_key(topic: str, qid: int, qoff: int) -> bytes:
    return b"c" + _t(topic) + _QOFF.pack(qid, qoff)


def cq_prefix(topic: str, qid: int) -> bytes:
    return b"c" + _t(topic) + _QID.pack(qid)


def qmax_key(topic: str, qid: int) -> bytes:
    return b"Q" + _t(topic) + _QID.pack(qid)


def qmin_key(topic: str, qid: int) -> bytes:
    return b"N" + _t(topic) + _QID.pack(qid)


def parse_queue_key(key: bytes) -> tuple[str, int]:
    t, _, rest = key[1:].partition(b"\x00")
    return t.decode(), _QID.unpack(rest[:4])[0]


def key_key(topic: str, key: str, phys: int) -> bytes:
    return b"k" + _t(topic) + key.encode() + b"\x00" + _PHYS_BE.pack(phys)


def key_prefix(topic: str, key: str) -> bytes:
    return b"k" + _t(topic) + key.encode() + b"\x00"


def id_key(msg_id: str) -> bytes:
    return b"i" + msg_id.encode()


def offset_key(group: str, topic: str, qid: int) -> bytes:
    return b"o" + group.encode() + b"\x00" + _t(topic) + _QID.pack(qid)


def parse_offset_key(key: bytes) -> tuple[str, str, int]:
    g, _, rest = key[1:].partition(b"\x00")
    t, _, q = rest.partition(b"\x00")
    return g.decode(), t.decode(), _QID.unpack(q[:4])[0]


def meta_key(phys: int) -> bytes:
    return b"M" + _PHYS_BE.pack(phys)


def pack_q(v: int) -> bytes:
    return _Q.pack(v)


def unpack_q(b: bytes) -> int:
    return _Q.unpack(b)[0]


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with prefix."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    p[-1] += 1
    return bytes(p)


class IndexCorrupt(StoreError):
    """The index database cannot be opened (names the directory and how to rebuild it)."""

    code = "CORRUPT_DATA"


class IndexStore:
    """The rocksdict of one store; `path` is a directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        try:
            self.db = Rdict(path, options=opts)
        except Exception as e:  # noqa: BLE001 - rocksdict raises a bare Exception for corruption
            raise IndexCorrupt(f"{path}: cannot open the index ({str(e).strip()[:300]}); it is derived from the "
                               f"commitlog: move {path} away and start again to rebuild it") from None
        self._sync = WriteOptions()
        self._sync.sync = True

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def destroy(path: str) -> None:
        if os.path.exists(path):
            shutil.rmtree(path)

    def batch(self) -> WriteBatch:
        return WriteBatch(raw_mode=True)

    def write(self, wb: WriteBatch, sync: bool = False) -> None:
        if sync:
            self.db.write(wb, self._sync)
        else:
            self.db.write(wb)

    def sync_checkpoint(self, offset: int) -> None:
        """Write the dispatch checkpoint `offset` with a synced write, so it and everything written
        before it are durable (a clean close; the dispatcher's own rounds are not synced)."""
        wb = self.batch()
        wb.put(CHECKPOINT, pack_q(offset))
        self.db.write(wb, self._sync)

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def checkpoint(self) -> int | None:
        v = self.db.get(CHECKPOINT)
        return None if v is None else unpack_q(v)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) with keys starting with prefix, from `start` (>= prefix) on."""
        it = self.db.iter()
        it.seek(start or prefix)
        yield from _forward(it, prefix)

    def scan_from_floor(self, prefix: bytes, key: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) with keys starting with prefix, from the last one <= `key` on (from the
        first one > `key` when none is <= it), with one iterator."""
        it = self.db.iter()
        it.seek_for_prev(key)
        if not it.valid():
            it.seek(key)
        elif not it.key().startswith(prefix):
            it.next()
        yield from _forward(it, prefix)

    def scan_reverse(self, prefix: bytes, before: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) with keys starting with prefix and < before, newest first."""
        it = self.db.iter()
        it.seek_for_prev(before)
        while it.valid():
            k = it.key()
            if k >= before:
                it.prev()
                continue
            if not k.startswith(prefix):
                return
            yield k, it.value()
            it.prev()

    # ---- metadata ----------------------------------------------------------------------------------

    def meta_state(self) -> dict[str, Any]:
        """{"topics": {name: cfg}, "groups": {name: cfg}, "offsets": [[g, t, q, off]]} as stored."""
        topics = {k[1:].decode(): json.loads(v) for k, v in self.scan(b"t")}
        groups = {k[1:].decode(): json.loads(v) for k, v in self.scan(b"g")}
        offsets = [[*parse_offset_key(k), unpack_q(v)] for k, v in self.scan(b"o")]
        return {"topics": topics, "groups": groups, "offsets": offsets}

    def write_meta_state(self, wb: WriteBatch, state: dict[str, Any]) -> None:
        """Replace all metadata tables with `state` (inside wb)."""
        for p in (b"t", b"g", b"o"):
            wb.delete_range(p, prefix_end(p))
        for name, cfg in state["topics"].items():
            wb.put(b"t" + name.encode(), json.dumps(cfg, sort_keys=True).encode())
        for name, cfg in state["groups"].items():
            wb.put(b"g" + name.encode(), json.dumps(cfg, sort_keys=True).encode())
        for g, t, q, off in state["offsets"]:
            wb.put(offset_key(g, t, q), pack_q(off))
