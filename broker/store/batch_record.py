"""Batch records (pure): many messages of one topic and queue stored as ONE commitlog record.

Owns: the byte layout of a batch record, building one (the producer does it once), validating one
cheaply (two CRC-32C passes in C plus O(1) Python calls; nothing per message), stamping the
fields the broker assigns (queue id, base queue offset, physical offset, store time) without
touching the message bytes, and decoding single messages out of one (eagerly for the store,
lazily for the client). No files, clocks, sockets or threads.

Layout (little endian). The first 12 bytes are those of every commitlog record (crc, total_size,
magic), so the commitlog finds, checks, copies and truncates batches like any other record:

    crc u32            CRC-32C of bytes [4, meta_len): the header, the tables and the columns
    total_size u32     the whole record
    magic u32          MAGIC_BATCH
    version u8         1
    flags u8           FLAG_IDS_EXPLICIT: each message's properties carry its UNIQ_KEY
    topic_len u8, born_host_len u8
    queue_id i32, base_queue_offset i64, physical_offset i64, store_ts i64   (stamped by the broker)
    born_ts i64        milliseconds, one for the batch
    count u32          messages (>= 1); message i has queue offset base_queue_offset + i
    ntags u16, nkeys u16
    id_first u64       compact ids: message i's id is id_prefix + "%012X" % (id_first + i)
    id_prefix_len u8, 3 pad bytes
    meta_len u32       where the data starts (end of the header, tables and columns)
    data_crc u32       CRC-32C of bytes [meta_len, total_size) (computed once, by the producer)
  tables:  topic, born_host, id_prefix; ntags x (u16 len, tag); nkeys x (u16 len, key)
  columns: tag_idx u16[count] (0 = no tag, t = tags[t-1]); props_len u32[count]; body_len u32[count]
  data:    every message's properties blob (record.encode_properties: KEYS, UNIQ_KEY if explicit,
           user properties), then every body

The tag table lets the consume queue carry one tag hash per batch (or "mixed") and lets a reader
filter with the tag_idx column; the key table is what the key index gets (one entry per distinct
key per batch); compact ids give one msg-id index entry per batch. The data CRC is the producer's:
the broker verifies it once and never recomputes it; stamping only recomputes the header CRC.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from crc32c import crc32c

from orbitmq.broker.store.record import (
    MAGIC_BATCH,
    PROP_KEYS,
    PROP_UNIQ,
    CodecError,
    Message,
    decode_properties,
    encode_properties,
)

VERSION = 1
FLAG_IDS_EXPLICIT = 0x1
HEADER = struct.Struct("<IIIBBBBiqqqqIHHQB3xII")
HEADER_SIZE = HEADER.size  # 80
(B_CRC, B_TOTAL, B_MAGIC, B_VERSION, B_FLAGS, B_TOPIC_LEN, B_BORN_HOST_LEN, B_QUEUE_ID, B_BASE, B_PHYS, B_STORE_TS,
 B_BORN_TS, B_COUNT, B_NTAGS, B_NKEYS, B_ID_FIRST, B_ID_PREFIX_LEN, B_META_LEN, B_DATA_CRC) = range(19)
_STAMP = struct.Struct("<iqqq")  # queue_id, base_queue_offset, physical_offset, store_ts
_STAMP_AT = 16
_META_LEN = struct.Struct("<II")  # meta_len, data_crc
_META_LEN_AT = 72
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
ID_DIGITS = 12
MAX_COUNT = 1 << 20
# the largest batch record a store takes: replication sends a record whole in one frame (its
# payload is at most 8 MiB, broker/ha/protocol.py MAX_PAYLOAD)
MAX_RECORD_BYTES = (8 << 20) - (64 << 10)
_LITTLE = sys.byteorder == "little"
TAG_MIXED = 0xFFFFFFFF  # the consume queue's tag hash of a batch holding several distinct tags


def _column(kind: str, b) -> array:
    a = array(kind)
    a.frombytes(b)
    if not _LITTLE:
        a.byteswap()
    return a


_AT_MOST = [bytes(range(k + 1)) for k in range(255)]
_ZERO_U32 = bytes(4)


def u16_at_most(raw: bytes, k: int) -> bool:
    """Every little-endian u16 of `raw` is <= k: for k < 255 two C passes over the bytes (high bytes
    all zero, no low byte outside 0..k), with no Python int made per value."""
    if k >= 255:
        return max(_column("H", raw), default=0) <= k
    return raw[1::2].count(0) == len(raw) // 2 and not raw[0::2].translate(None, _AT_MOST[k])


def has_zero_u32(raw: bytes) -> bool:
    """Some aligned u32 of `raw` is 0 (in either byte order): a C search for four zero bytes, kept
    only at a multiple of 4."""
    i = raw.find(_ZERO_U32)
    while i >= 0:
        if not i & 3:
            return True
        i = raw.find(_ZERO_U32, i + 1)
    return False


def _col_bytes(a: array) -> bytes:
    if not _LITTLE:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _crc(buf, start: int, end: int) -> int:
    with memoryview(buf) as mv:
        return crc32c(mv[start:end])


def format_id(prefix: str, counter: int) -> str:
    return f"{prefix}{counter:0{ID_DIGITS}X}"


def split_id(msg_id: str) -> tuple[str, int] | None:
    """(prefix, counter) of a compact id, or None if it has no 12-hex-digit tail."""
    if len(msg_id) <= ID_DIGITS:
        return None
    tail = msg_id[-ID_DIGITS:]
    try:
        n = int(tail, 16)
    except ValueError:
        return None
    if f"{n:0{ID_DIGITS}X}" != tail:
        return None
    return msg_id[:-ID_DIGITS], n


def encode(topic: str, bodies: list[bytes], **kw: Any) -> bytes:
    """One batch record, joined: see `encode_parts`."""
    meta, data = encode_parts(topic, bodies, **kw)
    return meta + data


def encode_parts(topic: str, bodies: list[bytes], *, tags: list[str] | None = None,
                 keys: list[list[str]] | None = None, properties: list[dict[str, str]] | None = None,
                 msg_ids: list[str] | None = None, id_prefix: str = "", id_first: int = 0, born_ts: int = 0,
                 born_host: str = "", queue_id: int = 0, base_queue_offset: int = 0, physical_offset: int = 0,
                 store_ts: int = 0) -> tuple[bytes, bytes]:
    """One batch record as two parts whose concatenation is it: the header with the tables and
    columns (up to meta_len), then the data (properties and bodies). A producer sends the two as
    they are, which saves copying the data into one record. Ids are compact (`id_prefix` + counter
    from `id_first`) unless `msg_ids` is given (then each message's properties carry its id).
    Raises ValueError on bad input (no messages, no ids, too long names); name rules proper are the
    broker's (names.py)."""
    n = len(bodies)
    if not 1 <= n <= MAX_COUNT:
        raise ValueError(f"a batch holds 1..{MAX_COUNT} messages, got {n}")
    for name, col in (("tags", tags), ("keys", keys), ("properties", properties), ("msg_ids", msg_ids)):
        if col is not None and len(col) != n:
            raise ValueError(f"{name} has {len(col)} entries for {n} bodies")
    explicit = msg_ids is not None
    if not explicit and not id_prefix:
        raise ValueError("a batch needs message ids: id_prefix (compact) or msg_ids")
    if explicit and (not all(msg_ids) or id_prefix):
        raise ValueError("explicit msg_ids must all be non-empty (and no id_prefix then)")
    tb, hb, pb = topic.encode(), born_host.encode(), (b"" if explicit else id_prefix.encode())
    if len(tb) > 0xFF or len(hb) > 0xFF or len(pb) > 0xFF:
        raise ValueError("topic, born_host and id_prefix take at most 255 bytes each")
    tag_table: dict[str, int] = {}
    tag_idx = array("H", bytes(2 * n)) if tags else array("H", bytes(2 * n))
    if tags:
        for i, t in enumerate(tags):
            if t:
                j = tag_table.get(t)
                if j is None:
                    if len(tag_table) >= 0xFFFE:
                        raise ValueError("too many distinct tags in one batch")
                    j = tag_table[t] = len(tag_table) + 1
                tag_idx[i] = j
    key_table: dict[str, None] = {}
    props_blobs: list[bytes] = []
    if keys or properties or explicit:
        for i in range(n):
            ks = keys[i] if keys else ()
            for k in ks:
                key_table[k] = None
            props_blobs.append(encode_properties("", ks, msg_ids[i] if explicit else "",
                                                 properties[i] if properties else {}))
        if len(key_table) > 0xFFFF:
            raise ValueError("too many distinct keys in one batch")
    else:
        props_blobs = []
    props_len = array("I", map(len, props_blobs)) if props_blobs else array("I", bytes(4 * n))
    body_len = array("I", map(len, bodies))
    tables = bytearray(tb + hb + pb)
    for t in tag_table:
        e = t.encode()
        if len(e) > 0xFFFF:
            raise ValueError("tag too long")
        tables += _U16.pack(len(e)) + e
    for k in key_table:
        e = k.encode()
        if len(e) > 0xFFFF:
            raise ValueError("key too long")
        tables += _U16.pack(len(e)) + e
    tables += _col_bytes(tag_idx) + _col_bytes(props_len) + _col_bytes(body_len)
    meta_len = HEADER_SIZE + len(tables)
    data = b"".join(props_blobs + bodies) if props_blobs else b"".join(bodies)
    total = meta_len + len(data)
    if total > 0xFFFFFFFF:
        raise ValueError("batch larger than 4 GiB")
    hdr = bytearray(HEADER.pack(0, total, MAGIC_BATCH, VERSION, FLAG_IDS_EXPLICIT if explicit else 0, len(tb),
                                len(hb), queue_id, base_queue_offset, physical_offset, store_ts, born_ts, n,
                                len(tag_table), len(key_table), id_first if not explicit else 0, len(pb), meta_len,
                                crc32c(data)))
    meta = hdr + tables
    _U32.pack_into(meta, 0, _crc(meta, 4, meta_len))
    return bytes(meta), data


@dataclass(slots=True)
class BatchView:
    """A parsed batch record (its bytes in `buf` from `pos`); see the module docstring."""

    buf: bytes
    pos: int
    total: int
    flags: int
    topic: str
    born_host: str
    queue_id: int
    base_queue_offset: int
    physical_offset: int
    store_ts: int
    born_ts: int
    count: int
    tags: list[str]
    keys: list[str]
    id_prefix: str
    id_first: int
    tag_idx: array
    props_len: array
    body_len: array
    meta_len: int
    props_bytes: int = -1        # sum of props_len (-1: not known yet)
    _props_at: list[int] | None = None
    _body_at: list[int] | None = None

    @property
    def end_queue_offset(self) -> int:
        return self.base_queue_offset + self.count

    def has_empty_body(self) -> bool:
        return has_zero_u32(self.body_len.tobytes())

    def tag_of(self, i: int) -> str:
        t = self.tag_idx[i]
        return self.tags[t - 1] if t else ""

    def uniform_tag(self) -> str | None:
        """The one tag every message has ("" = none), or None when they differ."""
        if not self.tags:
            return ""
        if len(self.tags) == 1 and self.tag_idx.tobytes().count(1) == self.count:   # every index is 1 (0 or 1 each)
            return self.tags[0]
        return None

    def _offsets(self) -> None:
        start = self.pos + self.meta_len
        if self.props_bytes == 0:    # no message has properties: only the bodies need offsets
            self._body_at = list(accumulate(self.body_len, initial=start))
            return
        self._props_at = list(accumulate(self.props_len, initial=start))
        self._body_at = list(accumulate(self.body_len, initial=self._props_at[-1]))

    def bodies(self, a: int, b: int) -> list[bytes]:
        """The bodies of messages a .. b-1 (one slice each)."""
        if self._body_at is None:
            self._offsets()
        at, buf = self._body_at, self.buf
        return [buf[x:y] for x, y in zip(at[a:b], at[a + 1:b + 1], strict=True)]

    def body(self, i: int) -> bytes:
        if self._body_at is None:
            self._offsets()
        a = self._body_at
        return self.buf[a[i]:a[i + 1]]

    def body_view(self, i: int) -> memoryview:
        if self._body_at is None:
            self._offsets()
        a = self._body_at
        return memoryview(self.buf)[a[i]:a[i + 1]]

    def props(self, i: int) -> dict[str, str]:
        """Message i's properties as stored (KEYS and UNIQ_KEY included)."""
        if not self.props_len[i]:
            return {}
        if self._props_at is None:
            self._offsets()
        a = self._props_at
        return decode_properties(bytes(self.buf[a[i]:a[i + 1]]))

    def msg_id(self, i: int, props: dict[str, str] | None = None) -> str:
        if self.flags & FLAG_IDS_EXPLICIT:
            return (self.props(i) if props is None else props).get(PROP_UNIQ, "")
        return format_id(self.id_prefix, self.id_first + i)

    def msg_ids(self) -> list[str]:
        if self.flags & FLAG_IDS_EXPLICIT:
            return [self.msg_id(i) for i in range(self.count)]
        p, f = self.id_prefix, self.id_first
        return [f"{p}{c:0{ID_DIGITS}X}" for c in range(f, f + self.count)]

    def index_of_id(self, msg_id: str) -> int | None:
        """Which message of the batch has this id (None: none)."""
        if self.flags & FLAG_IDS_EXPLICIT:
            for i in range(self.count):
                if self.msg_id(i) == msg_id:
                    return i
            return None
        s = split_id(msg_id)
        if s is None or s[0] != self.id_prefix or not 0 <= s[1] - self.id_first < self.count:
            return None
        return s[1] - self.id_first

    def message(self, i: int, store_host: str = "") -> Message:
        """Message i as the store's Message (queue offset base + i, the batch's physical offset)."""
        props = self.props(i)
        mid = self.msg_id(i, props)
        props.pop(PROP_UNIQ, None)
        ks = props.pop(PROP_KEYS, "")
        return Message(topic=self.topic, body=self.body(i), queue_id=self.queue_id, tags=self.tag_of(i),
                       keys=ks.split() if ks else [], properties=props, msg_id=mid, born_timestamp=self.born_ts,
                       born_host=self.born_host, store_host=store_host, store_timestamp=self.store_ts,
                       queue_offset=self.base_queue_offset + i, physical_offset=self.physical_offset,
                       size=self.total if self.count == 1 else self.total // self.count)


def check_crcs(buf, pos: int, total: int) -> None:
    """Both CRCs of the batch record at buf[pos:pos+total] (CodecError if either is wrong)."""
    if total < HEADER_SIZE:
        raise CodecError(f"batch size {total} smaller than its header {HEADER_SIZE}")
    meta_len, data_crc = _META_LEN.unpack_from(buf, pos + _META_LEN_AT)
    if not HEADER_SIZE <= meta_len <= total:
        raise CodecError(f"batch meta_len {meta_len} outside [{HEADER_SIZE}, {total}]")
    with memoryview(buf) as mv:
        got = crc32c(mv[pos + 4:pos + meta_len])
        if got != _U32.unpack_from(buf, pos)[0]:
            raise CodecError(f"batch header crc mismatch: stored {_U32.unpack_from(buf, pos)[0]:#010x}, "
                             f"computed {got:#010x}")
        got = crc32c(mv[pos + meta_len:pos + total])
    if got != data_crc:
        raise CodecError(f"batch data crc mismatch: stored {data_crc:#010x}, computed {got:#010x}")


def meta_len_of(buf, pos: int = 0) -> int:
    """meta_len of the batch record at pos, unchecked."""
    return _META_LEN.unpack_from(buf, pos + _META_LEN_AT)[0]


def check_meta(meta, total: int, expect_offset: int | None = None) -> None:
    """The header CRC of a batch's meta part alone (`meta` = its first meta_len bytes), that its
    size is `total` and, when given, that it says it is at `expect_offset` (CodecError if not)."""
    h = HEADER.unpack_from(meta, 0)
    if h[B_TOTAL] != total or h[B_META_LEN] != len(meta):
        raise CodecError(f"batch size fields ({h[B_TOTAL]}, meta {h[B_META_LEN]}) disagree with the record")
    with memoryview(meta) as mv:
        got = crc32c(mv[4:])
    if got != h[B_CRC]:
        raise CodecError(f"batch header crc mismatch: stored {h[B_CRC]:#010x}, computed {got:#010x}")
    if expect_offset is not None and h[B_PHYS] != expect_offset:
        raise CodecError(f"stored physical offset {h[B_PHYS]} but the batch is at {expect_offset}")


def parse(buf, pos: int = 0, limit: int | None = None, verify: bool = True, meta_only: bool = False) -> BatchView:
    """Parse (and unless verify=False, CRC-check) the batch record at buf[pos:]; every length is
    checked against the record size, so a bad batch raises CodecError and never reads out of it.
    `meta_only`: buf holds only the header, tables and columns (no message data can be read)."""
    if limit is None:
        limit = len(buf)
    if limit - pos < HEADER_SIZE:
        raise CodecError(f"{limit - pos} bytes cannot hold a batch header ({HEADER_SIZE})")
    h = HEADER.unpack_from(buf, pos)
    total = h[B_TOTAL]
    if h[B_MAGIC] != MAGIC_BATCH:
        raise CodecError(f"not a batch record (magic {h[B_MAGIC]:#x})")
    if h[B_VERSION] != VERSION:
        raise CodecError(f"batch version {h[B_VERSION]} (this code reads {VERSION})")
    if (h[B_META_LEN] if meta_only else total) > limit - pos:
        raise CodecError(f"batch size {total} runs past the end ({limit - pos} bytes left)")
    if meta_only:
        verify = False
    if verify:
        check_crcs(buf, pos, total)
    n = h[B_COUNT]
    if not 1 <= n <= MAX_COUNT:
        raise CodecError(f"batch count {n} outside 1..{MAX_COUNT}")
    meta_len = h[B_META_LEN]
    if not HEADER_SIZE <= meta_len <= total:
        raise CodecError(f"batch meta_len {meta_len} outside [{HEADER_SIZE}, {total}]")
    explicit = bool(h[B_FLAGS] & FLAG_IDS_EXPLICIT)
    p = pos + HEADER_SIZE
    end = pos + meta_len
    try:
        fixed = h[B_TOPIC_LEN] + h[B_BORN_HOST_LEN] + h[B_ID_PREFIX_LEN]
        if p + fixed > end:
            raise CodecError("batch tables run past meta_len")
        topic = bytes(buf[p:p + h[B_TOPIC_LEN]]).decode()
        p += h[B_TOPIC_LEN]
        born_host = bytes(buf[p:p + h[B_BORN_HOST_LEN]]).decode()
        p += h[B_BORN_HOST_LEN]
        id_prefix = bytes(buf[p:p + h[B_ID_PREFIX_LEN]]).decode()
        p += h[B_ID_PREFIX_LEN]
        if not explicit and not id_prefix:
            raise CodecError("batch without ids (no id prefix and no explicit ids)")
        tables: list[list[str]] = [[], []]
        for t, cnt in ((0, h[B_NTAGS]), (1, h[B_NKEYS])):
            for _ in range(cnt):
                if p + 2 > end:
                    raise CodecError("batch tag/key table runs past meta_len")
                ln = _U16.unpack_from(buf, p)[0]
                p += 2
                if p + ln > end:
                    raise CodecError("batch tag/key table runs past meta_len")
                tables[t].append(bytes(buf[p:p + ln]).decode())
                p += ln
    except UnicodeDecodeError as e:
        raise CodecError(f"batch names are not UTF-8: {e}") from None
    if p + 10 * n != end:
        raise CodecError(f"batch columns take {end - p} bytes, {n} messages need {10 * n}")
    tag_raw = bytes(buf[p:p + 2 * n])
    tag_idx = _column("H", tag_raw)
    p += 2 * n
    props_raw = bytes(buf[p:p + 4 * n])
    props_len = _column("I", props_raw)
    p += 4 * n
    body_len = _column("I", buf[p:p + 4 * n])
    props_bytes = 0 if props_raw.count(0) == len(props_raw) else sum(props_len)
    if props_bytes + sum(body_len) != total - meta_len:
        raise CodecError(f"batch columns sum to {props_bytes + sum(body_len)} data bytes, "
                         f"the record holds {total - meta_len}")
    if not u16_at_most(tag_raw, len(tables[0])):
        raise CodecError(f"batch tag index {max(tag_idx)} beyond its {len(tables[0])} tags")
    if explicit and has_zero_u32(props_raw):
        raise CodecError("batch with explicit ids has a message without properties")
    return BatchView(buf, pos, total, h[B_FLAGS], topic, born_host, h[B_QUEUE_ID], h[B_BASE], h[B_PHYS],
                     h[B_STORE_TS], h[B_BORN_TS], n, tables[0], tables[1], id_prefix, h[B_ID_FIRST], tag_idx,
                     props_len, body_len, meta_len, props_bytes)


def header(buf, pos: int = 0) -> tuple:
    """The raw header tuple (see HEADER, B_* names) of the batch at pos, unchecked."""
    return HEADER.unpack_from(buf, pos)


def stamped_meta(buf, meta_len: int, queue_id: int, base_queue_offset: int, physical_offset: int,
                 store_ts: int) -> bytearray:
    """A copy of the batch's header, tables and columns with the broker's fields written in and
    the header CRC recomputed (the data and its CRC are left as the producer made them)."""
    meta = bytearray(buf[:meta_len])
    _STAMP.pack_into(meta, _STAMP_AT, queue_id, base_queue_offset, physical_offset, store_ts)
    _U32.pack_into(meta, 0, _crc(meta, 4, meta_len))
    return meta


def restamp(meta: bytearray, queue_id: int, base_queue_offset: int, physical_offset: int, store_ts: int) -> None:
    """Stamp in place (meta from stamped_meta), recomputing the header CRC."""
    _STAMP.pack_into(meta, _STAMP_AT, queue_id, base_queue_offset, physical_offset, store_ts)
    _U32.pack_into(meta, 0, _crc(meta, 4, len(meta)))
