"""The commitlog record codec (pure): encode/decode/verify one self-describing record.

Owns: the byte layout of a record and nothing else (no files, no clocks, no threads).

Layout (little endian), HEADER is fixed, the variable parts follow in this order:

    crc u32          zlib.crc32 over every byte of the record after this field
    total_size u32   the whole record, header included
    magic u32        MAGIC_MESSAGE, MAGIC_META or MAGIC_BLANK (end-of-segment padding); MAGIC_BATCH
                     records (many messages in one) share only these first 12 bytes: batch_record.py
    flag u32         user flag
    queue_id i32     (-1 for META)
    queue_offset i64 (-1 for META)
    physical_offset i64  where the record starts in the commitlog (checked by append_raw)
    sys_flag u32     transaction type bits (RocketMQ sysFlag)
    born_ts i64, store_ts i64   milliseconds
    reconsume u32, prepared_tx_offset i64
    body_len u32, topic_len u8, born_host_len u8, store_host_len u8, props_len u16
    topic, born_host, store_host, properties, body

Properties are `name \\x01 value \\x02` pairs; the system properties TAGS, KEYS (space separated)
and UNIQ_KEY (the message id) are kept there and surfaced as fields of `Message`. A BLANK record
pads the end of a segment: crc, total_size (the rest of the segment), magic, then zero bytes.
A zero total_size means "no record here": the end of written data in a preallocated segment.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from orbitmq.broker.store.errors import BadMessage

MAGIC_MESSAGE = 0xAABBCC01
MAGIC_META = 0xAABBCC02
MAGIC_BLANK = 0xAABBCC03
MAGIC_BATCH = 0xAABBCC04  # many messages as one record: layout and checks in batch_record.py
MAGICS = (MAGIC_MESSAGE, MAGIC_META, MAGIC_BLANK, MAGIC_BATCH)

HEADER = struct.Struct("<IIIIiqqIqqIqIBBBH")
HEADER_SIZE = HEADER.size
# positions in HEADER.unpack(...) (read code indexes the tuple by these names, never by number)
(H_CRC, H_TOTAL, H_MAGIC, H_FLAG, H_QUEUE_ID, H_QUEUE_OFFSET, H_PHYSICAL_OFFSET, H_SYS_FLAG, H_BORN_TS,
 H_STORE_TS, H_RECONSUME, H_PREPARED_TX, H_BODY_LEN, H_TOPIC_LEN, H_BORN_HOST_LEN, H_STORE_HOST_LEN,
 H_PROPS_LEN) = range(17)
BLANK_MIN = 12  # crc + total_size + magic
_PREFIX = struct.Struct("<III")  # crc, total_size, magic
_U32 = struct.Struct("<I")

PROP_TAGS = "TAGS"
PROP_KEYS = "KEYS"
PROP_UNIQ = "UNIQ_KEY"
RESERVED_PROPS = (PROP_TAGS, PROP_KEYS, PROP_UNIQ)

# sys_flag transaction bits (as RocketMQ MessageSysFlag)
TX_NOT_TYPE = 0
TX_PREPARED = 0x4
TX_COMMIT = 0x8
TX_ROLLBACK = 0xC

MAX_PROPS_BYTES = 0xFFFF
MAX_HOST_BYTES = 0xFF


class CodecError(ValueError):
    """A byte range that is not a valid record; `reason` says what was wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Message:
    """A message as stored; the store fills queue_offset, physical_offset, store_* and size."""

    topic: str
    body: bytes = b""
    queue_id: int = 0
    tags: str = ""
    keys: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    msg_id: str = ""
    flag: int = 0
    sys_flag: int = 0
    born_timestamp: int = 0
    born_host: str = ""
    store_host: str = ""
    store_timestamp: int = 0
    reconsume_times: int = 0
    prepared_tx_offset: int = 0
    queue_offset: int = -1
    physical_offset: int = -1
    size: int = 0
    magic: int = MAGIC_MESSAGE

    @property
    def is_meta(self) -> bool:
        return self.magic == MAGIC_META


def encode_properties(tags: str, keys: list[str] | tuple[str, ...], msg_id: str, props: dict[str, str]) -> bytes:
    """The properties blob; raises BadMessage for reserved names or separator bytes in user props."""
    parts = []
    if tags:
        parts.append(f"{PROP_TAGS}\x01{tags}\x02")
    if keys:
        parts.append(f"{PROP_KEYS}\x01{' '.join(keys)}\x02")
    if msg_id:
        parts.append(f"{PROP_UNIQ}\x01{msg_id}\x02")
    for k, v in props.items():
        if k in RESERVED_PROPS:
            raise BadMessage(f"property name {k!r} is reserved (use the message field)")
        if not k or "\x01" in k or "\x02" in k or "\x01" in v or "\x02" in v:
            raise BadMessage(f"property {k!r} is empty or holds separator bytes 0x01/0x02")
        parts.append(f"{k}\x01{v}\x02")
    b = "".join(parts).encode()
    if len(b) > MAX_PROPS_BYTES:
        raise BadMessage(f"properties take {len(b)} bytes, at most {MAX_PROPS_BYTES}")
    return b


def decode_properties(b: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    if not b:
        return out
    for pair in b.decode().split("\x02"):
        if pair:
            k, _, v = pair.partition("\x01")
            out[k] = v
    return out


def _host(h: str) -> bytes:
    b = h.encode()
    if len(b) > MAX_HOST_BYTES:
        raise BadMessage(f"host {h!r} longer than {MAX_HOST_BYTES} bytes")
    return b


_U32_MAX = 0xFFFFFFFF
_I32 = (-(1 << 31), (1 << 31) - 1)
_I64 = (-(1 << 63), (1 << 63) - 1)


def check_fields(*, flag: int, queue_id: int, sys_flag: int, born_ts: int, reconsume: int,
                 prepared_tx_offset: int, topic_b: bytes = b"", props_b: bytes = b"") -> None:
    """Raise BadMessage (naming the field) unless every value fits its place in the header; a
    store calls this before it assigns any offset, so a refused message uses none up."""
    if (0 <= flag <= _U32_MAX and 0 <= sys_flag <= _U32_MAX and 0 <= reconsume <= _U32_MAX
            and _I32[0] <= queue_id <= _I32[1] and 0 <= born_ts <= _I64[1] and _I64[0] <= prepared_tx_offset <= _I64[1]
            and len(topic_b) <= 0xFF and len(props_b) <= MAX_PROPS_BYTES):
        return    # all in range (the common case, without building the table below)
    for name, v, lo, hi in (("flag", flag, 0, _U32_MAX), ("sys_flag", sys_flag, 0, _U32_MAX),
                            ("reconsume_times", reconsume, 0, _U32_MAX), ("queue_id", queue_id, *_I32),
                            ("born_timestamp", born_ts, 0, _I64[1]),
                            ("prepared_transaction_offset", prepared_tx_offset, *_I64)):
        if not lo <= v <= hi:
            raise BadMessage(f"{name} must be in {lo}..{hi}, got {v}")
    if len(topic_b) > 0xFF:
        raise BadMessage(f"topic longer than 255 bytes: {len(topic_b)}")
    if len(props_b) > MAX_PROPS_BYTES:
        raise BadMessage(f"properties take {len(props_b)} bytes, at most {MAX_PROPS_BYTES}")


def record_size(topic_b: bytes, born_b: bytes, store_b: bytes, props_b: bytes, body: bytes) -> int:
    return HEADER_SIZE + len(topic_b) + len(born_b) + len(store_b) + len(props_b) + len(body)


def encode_into(buf: bytearray, magic: int, topic_b: bytes, born_b: bytes, store_b: bytes, props_b: bytes,
                body: bytes, *, flag: int, queue_id: int, queue_offset: int, physical_offset: int, sys_flag: int,
                born_ts: int, store_ts: int, reconsume: int, prepared_tx_offset: int) -> int:
    """Append one record to `buf` (CRC filled in); returns its size. Inputs are pre-encoded bytes."""
    start = len(buf)
    if len(topic_b) > 0xFF:
        raise BadMessage(f"topic longer than 255 bytes: {len(topic_b)}")
    if len(props_b) > MAX_PROPS_BYTES:
        raise BadMessage(f"properties take {len(props_b)} bytes, at most {MAX_PROPS_BYTES}")
    total = HEADER_SIZE + len(topic_b) + len(born_b) + len(store_b) + len(props_b) + len(body)
    buf += HEADER.pack(0, total, magic, flag, queue_id, queue_offset, physical_offset, sys_flag, born_ts,
                       store_ts, reconsume, prepared_tx_offset, len(body), len(topic_b), len(born_b), len(store_b),
                       len(props_b))
    buf += topic_b
    buf += born_b
    buf += store_b
    buf += props_b
    buf += body
    with memoryview(buf) as mv:
        _U32.pack_into(buf, start, zlib.crc32(mv[start + 4:start + total]))
    return total


def encode(msg: Message, physical_offset: int, queue_offset: int | None = None, store_ts: int | None = None) -> bytes:
    """One record for `msg` at `physical_offset` (tests, tools; the store uses encode_into)."""
    buf = bytearray()
    encode_into(buf, msg.magic, msg.topic.encode(), _host(msg.born_host), _host(msg.store_host),
                encode_properties(msg.tags, msg.keys, msg.msg_id, msg.properties), bytes(msg.body),
                flag=msg.flag, queue_id=msg.queue_id,
                queue_offset=msg.queue_offset if queue_offset is None else queue_offset,
                physical_offset=physical_offset, sys_flag=msg.sys_flag, born_ts=msg.born_timestamp,
                store_ts=msg.store_timestamp if store_ts is None else store_ts, reconsume=msg.reconsume_times,
                prepared_tx_offset=msg.prepared_tx_offset)
    return bytes(buf)


def encode_blank(size: int) -> bytes:
    """End-of-segment padding of exactly `size` bytes (>= BLANK_MIN)."""
    if size < BLANK_MIN:
        raise ValueError(f"blank needs at least {BLANK_MIN} bytes, got {size}")
    rec = bytearray(size)
    _PREFIX.pack_into(rec, 0, 0, size, MAGIC_BLANK)
    _U32.pack_into(rec, 0, zlib.crc32(memoryview(rec)[4:]))
    return bytes(rec)


def peek_magic(buf, pos: int) -> int:
    """magic of the record at pos, unchecked."""
    return _U32.unpack_from(buf, pos + 8)[0]


def peek_prefix(buf, pos: int) -> tuple[int, int, int]:
    """(crc, total_size, magic) of the record at pos, unchecked."""
    return _PREFIX.unpack_from(buf, pos)


def peek_size(buf, pos: int) -> int:
    """total_size of the record at pos (0 = no record), without checking anything else."""
    return _U32.unpack_from(buf, pos + 4)[0]


def check(buf, pos: int, limit: int, expect_offset: int | None = None) -> tuple[int, int]:
    """Verify the record at buf[pos:]; returns (total_size, magic) or raises CodecError.

    `limit` is the end of the readable area (the segment end); `expect_offset`, when given, must
    equal the physical offset stored in a MESSAGE/META record.
    """
    if limit - pos < BLANK_MIN:
        raise CodecError(f"only {limit - pos} bytes left, a record needs at least {BLANK_MIN}")
    crc, total, magic = _PREFIX.unpack_from(buf, pos)
    if total == 0:
        raise CodecError("zero size (no record)")
    if magic not in MAGICS:
        raise CodecError(f"bad magic {magic:#x}")
    if total > limit - pos:
        raise CodecError(f"size {total} runs past the end ({limit - pos} bytes left)")
    if magic == MAGIC_BATCH:
        from orbitmq.broker.store import batch_record as br
        br.check_crcs(buf, pos, total)
        if expect_offset is not None:
            phys = br.header(buf, pos)[br.B_PHYS]
            if phys != expect_offset:
                raise CodecError(f"stored physical offset {phys} but the batch is at {expect_offset}")
        return total, magic
    if magic != MAGIC_BLANK and total < HEADER_SIZE:
        raise CodecError(f"size {total} smaller than the header {HEADER_SIZE}")
    with memoryview(buf) as mv:
        got = zlib.crc32(mv[pos + 4:pos + total])
    if got != crc:
        raise CodecError(f"crc mismatch: stored {crc:#010x}, computed {got:#010x}")
    if magic != MAGIC_BLANK:
        h = HEADER.unpack_from(buf, pos)
        var = h[H_BODY_LEN] + h[H_TOPIC_LEN] + h[H_BORN_HOST_LEN] + h[H_STORE_HOST_LEN] + h[H_PROPS_LEN]
        if HEADER_SIZE + var != total:
            raise CodecError(f"field lengths ({HEADER_SIZE}+{var}) disagree with size {total}")
        if expect_offset is not None and h[H_PHYSICAL_OFFSET] != expect_offset:
            raise CodecError(f"stored physical offset {h[H_PHYSICAL_OFFSET]} but the record is at {expect_offset}")
    return total, magic


def decode(buf, pos: int = 0, limit: int | None = None, verify: bool = True) -> Message:
    """Decode the record at buf[pos:] into a Message (CRC checked unless verify=False)."""
    if limit is None:
        limit = len(buf)
    if verify:
        check(buf, pos, limit)
    h = HEADER.unpack_from(buf, pos)
    (_crc, total, magic, flag, queue_id, queue_offset, phys, sys_flag, born_ts, store_ts, reconsume, prep,
     body_len, topic_len, bh_len, sh_len, props_len) = h
    if magic == MAGIC_BLANK:
        raise CodecError("blank record (end-of-segment padding)")
    if magic == MAGIC_BATCH:
        raise CodecError("batch record: decode it with batch_record.parse")
    p = pos + HEADER_SIZE
    topic = bytes(buf[p:p + topic_len]).decode()
    p += topic_len
    born_host = bytes(buf[p:p + bh_len]).decode()
    p += bh_len
    store_host = bytes(buf[p:p + sh_len]).decode()
    p += sh_len
    props = decode_properties(bytes(buf[p:p + props_len]))
    p += props_len
    body = bytes(buf[p:p + body_len])
    tags = props.pop(PROP_TAGS, "")
    keys_s = props.pop(PROP_KEYS, "")
    msg_id = props.pop(PROP_UNIQ, "")
    return Message(topic=topic, body=body, queue_id=queue_id, tags=tags, keys=keys_s.split() if keys_s else [],
                   properties=props, msg_id=msg_id, flag=flag, sys_flag=sys_flag, born_timestamp=born_ts,
                   born_host=born_host, store_host=store_host, store_timestamp=store_ts, reconsume_times=reconsume,
                   prepared_tx_offset=prep, queue_offset=queue_offset, physical_offset=phys, size=total,
                   magic=magic)


def header_fields(buf, pos: int) -> tuple:
    """The raw header tuple (see HEADER) of the record at pos, unchecked."""
    return HEADER.unpack_from(buf, pos)


def tag_hash(tag: str) -> int:
    """Stable 32-bit hash of a tag (the consume queue stores it for filtering)."""
    return zlib.crc32(tag.encode()) if tag else 0
