"""The replication stream's framing (pure): bytes in, typed frames out, and back.

Owns: the wire format between a follower (or learner) and its master over one TCP connection.
Every frame is a 12-byte header (magic b"OH", version 2, type, payload length u32, CRC32 u32) and a
payload; the CRC covers the header's first 8 bytes and the payload, so a flipped type or length byte
is caught like a flipped payload byte (version 1 covered only the payload). Malformed peer input raises `FrameError` with what was wrong; a bad
argument from our own code raises ValueError. No sockets here: `FrameDecoder.feed(bytes)`
returns the complete frames seen so far.

Frames (all integers big-endian, offsets and epochs signed 64-bit):
- HELLO (follower -> master): broker_id, flags (1 = learner, 2 = signed), max_offset, epoch list,
  then with flag 2 the cluster-secret signature (u16 length + ASCII `common/node_auth.py` header
  value) over the same HELLO without it (`hello_signed_bytes`); admission rules: ha/hello_check.py.
- WELCOME (master -> follower): master_id, master_epoch, max_offset, min_offset,
  confirm_offset, epoch list.
- DATA (master -> follower): start, epoch, epoch_start, confirm_offset, master_max, raw commitlog
  bytes (whole records; empty = heartbeat).
- ACK (follower -> master): the follower's max offset (also its heartbeat).
- REFUSE (either way): a code and a message, then the sender closes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from orbitmq.broker.ha.epochs import EpochEntry

MAGIC = b"OH"
VERSION = 2
HEADER = struct.Struct(">2sBBII")
HEADER_SIZE = HEADER.size
_CRC_PREFIX = struct.Struct(">2sBBI")  # the header bytes the CRC covers (all but the CRC)
MAX_PAYLOAD = 8 * 1024 * 1024
HELLO_MAX_PAYLOAD = 64 * 1024   # what a master buffers from a peer (HELLO, ACK): 4,000 epoch entries

T_HELLO, T_WELCOME, T_DATA, T_ACK, T_REFUSE = 1, 2, 3, 4, 5
FLAG_LEARNER = 1
FLAG_SIGNED = 2

_HELLO = struct.Struct(">qBqI")
_WELCOME = struct.Struct(">qqqqqI")
_DATA = struct.Struct(">qqqqq")
_ACK = struct.Struct(">q")
_ENTRY = struct.Struct(">qq")
_REFUSE = struct.Struct(">H")
_AUTH_LEN = struct.Struct(">H")


class FrameError(Exception):
    """The peer sent bytes that are not a valid frame (the connection must be closed)."""


@dataclass(frozen=True)
class Hello:
    broker_id: int
    learner: bool
    max_offset: int
    epochs: tuple[EpochEntry, ...]
    auth: str = ""   # cluster-secret signature (node_auth header value); "" = unsigned


@dataclass(frozen=True)
class Welcome:
    master_id: int
    master_epoch: int
    max_offset: int
    min_offset: int
    confirm_offset: int
    epochs: tuple[EpochEntry, ...]


@dataclass(frozen=True)
class Data:
    start: int
    epoch: int
    epoch_start: int
    confirm_offset: int
    master_max: int
    body: bytes

    @property
    def end(self) -> int:
        return self.start + len(self.body)


@dataclass(frozen=True)
class Ack:
    offset: int


@dataclass(frozen=True)
class Refuse:
    code: str
    message: str


Frame = Hello | Welcome | Data | Ack | Refuse


def frame_crc(ftype: int, length: int, *payload_parts: bytes | memoryview) -> int:
    """CRC32 over the header's magic, version, type and length, then the payload parts in order."""
    crc = zlib.crc32(_CRC_PREFIX.pack(MAGIC, VERSION, ftype, length))
    for part in payload_parts:
        crc = zlib.crc32(part, crc)
    return crc


def _frame(ftype: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(MAGIC, VERSION, ftype, len(payload), frame_crc(ftype, len(payload), payload)) + payload


def _hello_payload(h: Hello, with_auth: bool = True) -> bytes:
    signed = with_auth and bool(h.auth)
    flags = (FLAG_LEARNER if h.learner else 0) | (FLAG_SIGNED if signed else 0)
    out = _HELLO.pack(h.broker_id, flags, h.max_offset, len(h.epochs)) + _entries(h.epochs)
    if signed:
        auth = h.auth.encode("ascii")
        out += _AUTH_LEN.pack(len(auth)) + auth
    return out


def hello_signed_bytes(h: Hello) -> bytes:
    """What a HELLO's signature covers: its payload without the signature (and without flag 2)."""
    return _hello_payload(h, with_auth=False)


def _entries(epochs: tuple[EpochEntry, ...] | list[EpochEntry]) -> bytes:
    return b"".join(_ENTRY.pack(e.epoch, e.start_offset) for e in epochs)


def encode(frame: Frame) -> bytes:
    """The bytes of one frame."""
    if isinstance(frame, Data):
        return _frame(T_DATA, _DATA.pack(frame.start, frame.epoch, frame.epoch_start, frame.confirm_offset,
                                         frame.master_max) + frame.body)
    if isinstance(frame, Ack):
        return _frame(T_ACK, _ACK.pack(frame.offset))
    if isinstance(frame, Hello):
        return _frame(T_HELLO, _hello_payload(frame))
    if isinstance(frame, Welcome):
        return _frame(T_WELCOME, _WELCOME.pack(frame.master_id, frame.master_epoch, frame.max_offset,
                                               frame.min_offset, frame.confirm_offset, len(frame.epochs))
                      + _entries(frame.epochs))
    if isinstance(frame, Refuse):
        code = frame.code.encode()
        return _frame(T_REFUSE, _REFUSE.pack(len(code)) + code + frame.message.encode())
    raise ValueError(f"not a frame: {frame!r}")


def encode_data_parts(frame: Data) -> tuple[bytes, bytes]:
    """(head, body) of a DATA frame, so a large body is written without concatenation."""
    fixed = _DATA.pack(frame.start, frame.epoch, frame.epoch_start, frame.confirm_offset, frame.master_max)
    length = len(fixed) + len(frame.body)
    if length > MAX_PAYLOAD:
        raise ValueError(f"payload of {length} bytes exceeds {MAX_PAYLOAD}")
    crc = frame_crc(T_DATA, length, fixed, frame.body)
    return HEADER.pack(MAGIC, VERSION, T_DATA, length, crc) + fixed, frame.body


def _decode_entries(buf: memoryview, count: int, where: str) -> tuple[EpochEntry, ...]:
    if len(buf) != count * _ENTRY.size:
        raise FrameError(f"{where}: {count} epoch entries need {count * _ENTRY.size} bytes, got {len(buf)}")
    out = tuple(EpochEntry(*_ENTRY.unpack_from(buf, i * _ENTRY.size)) for i in range(count))
    for i in range(1, len(out)):
        if not (out[i].epoch > out[i - 1].epoch and out[i].start_offset >= out[i - 1].start_offset):
            raise FrameError(f"{where}: epoch entries out of order at {i}")
    return out


def decode_payload(ftype: int, payload: bytes | memoryview) -> Frame:
    """One frame from its type and (CRC-checked) payload."""
    p = memoryview(payload)
    try:
        if ftype == T_DATA:
            if len(p) < _DATA.size:
                raise FrameError(f"DATA payload of {len(p)} bytes is shorter than {_DATA.size}")
            start, epoch, epoch_start, confirm, mmax = _DATA.unpack_from(p)
            if start < 0 or epoch_start > start or confirm < 0:
                raise FrameError(f"DATA with bad offsets start={start} epoch_start={epoch_start} confirm={confirm}")
            return Data(start, epoch, epoch_start, confirm, mmax, bytes(p[_DATA.size:]))
        if ftype == T_ACK:
            if len(p) != _ACK.size:
                raise FrameError(f"ACK payload must be {_ACK.size} bytes, got {len(p)}")
            (off,) = _ACK.unpack_from(p)
            if off < 0:
                raise FrameError(f"ACK with negative offset {off}")
            return Ack(off)
        if ftype == T_HELLO:
            if len(p) < _HELLO.size:
                raise FrameError(f"HELLO payload of {len(p)} bytes is shorter than {_HELLO.size}")
            bid, flags, mx, count = _HELLO.unpack_from(p)
            if flags & ~(FLAG_LEARNER | FLAG_SIGNED):
                raise FrameError(f"HELLO with unknown flags {flags:#x}")
            rest = p[_HELLO.size:]
            auth = ""
            if flags & FLAG_SIGNED:
                end = count * _ENTRY.size
                tail = rest[end:]
                if len(tail) < _AUTH_LEN.size:
                    raise FrameError("HELLO flagged signed has no signature")
                (n,) = _AUTH_LEN.unpack_from(tail)
                if len(tail) != _AUTH_LEN.size + n:
                    raise FrameError(f"HELLO signature of {n} bytes does not fill the rest of the frame")
                try:
                    auth = bytes(tail[_AUTH_LEN.size:]).decode("ascii")
                except UnicodeDecodeError:
                    raise FrameError("HELLO signature is not ASCII") from None
                rest = rest[:end]
            return Hello(bid, bool(flags & FLAG_LEARNER), mx, _decode_entries(rest, count, "HELLO"), auth)
        if ftype == T_WELCOME:
            if len(p) < _WELCOME.size:
                raise FrameError(f"WELCOME payload of {len(p)} bytes is shorter than {_WELCOME.size}")
            mid, mep, mx, mn, conf, count = _WELCOME.unpack_from(p)
            return Welcome(mid, mep, mx, mn, conf, _decode_entries(p[_WELCOME.size:], count, "WELCOME"))
        if ftype == T_REFUSE:
            if len(p) < _REFUSE.size:
                raise FrameError("REFUSE payload too short")
            (n,) = _REFUSE.unpack_from(p)
            if len(p) < _REFUSE.size + n:
                raise FrameError("REFUSE code runs past the payload")
            try:
                code = bytes(p[_REFUSE.size:_REFUSE.size + n]).decode()
                msg = bytes(p[_REFUSE.size + n:]).decode()
            except UnicodeDecodeError:
                raise FrameError("REFUSE text is not UTF-8") from None
            return Refuse(code, msg)
    except struct.error as e:  # pragma: no cover - lengths are checked above
        raise FrameError(str(e)) from None
    raise FrameError(f"unknown frame type {ftype}")


class FrameDecoder:
    """Incremental decoder: `feed(data)` returns every frame completed by `data`."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._need: tuple[int, int, int] | None = None  # (type, length, crc) of the frame in progress

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while True:
            if self._need is None:
                if len(self._buf) < HEADER_SIZE:
                    return out
                magic, ver, ftype, length, crc = HEADER.unpack_from(self._buf)
                if magic != MAGIC:
                    raise FrameError(f"bad magic {bytes(magic)!r} (not an OrbitMQ replication stream)")
                if ver != VERSION:
                    raise FrameError(f"unsupported frame version {ver}")
                if length > self.max_payload:
                    raise FrameError(f"frame payload of {length} bytes exceeds {self.max_payload}")
                self._need = (ftype, length, crc)
                del self._buf[:HEADER_SIZE]
            ftype, length, crc = self._need
            if len(self._buf) < length:
                return out
            payload = bytes(self._buf[:length])
            del self._buf[:length]
            self._need = None
            if frame_crc(ftype, length, payload) != crc:
                raise FrameError(f"CRC mismatch in a frame of type {ftype} ({length} bytes)")
            out.append(decode_payload(ftype, payload))

    def finish(self) -> None:
        """The stream ended: raise FrameError if it stopped in the middle of a frame."""
        if self._buf or self._need is not None:
            raise FrameError(f"stream ended inside a frame ({len(self._buf)} bytes pending)")


def decode_all(data: bytes) -> list[Frame]:
    """Every frame in `data`, which must end on a frame boundary."""
    d = FrameDecoder()
    frames = d.feed(data)
    d.finish()
    return frames
