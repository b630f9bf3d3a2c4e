"""The framed client protocol's codec (pure): bytes in, frames out, and back.

Owns: the byte layout of one frame between an OrbitMQ client and a broker's `remoting_listen`
port, the error payload of a failed call, and the limits a peer's bytes are checked against.
Never: sockets, threads, clocks, or which protobuf a method carries (`framing_methods.py`).
Malformed peer input raises `FrameError` (the connection must be closed); a bad argument from
our own code raises `ValueError`.

Frame (big-endian; after RocketMQ remoting's [length][header][body], with a fixed header):

    0   u32  length   bytes after this field: 10 + payload (+ 4 with FLAG_CRC)
    4   2s   magic    b"OR"
    6   u8   version  1
    7   u8   flags    1 RESPONSE, 2 ERROR (payload = error payload), 4 ONEWAY (no reply), 8 CRC
    8   u32  request id   chosen by the client, echoed by the reply: many calls share a connection
    12  u16  method   code (framing_methods.py); 0 = HELLO, the connection's first exchange
    14  ...  payload  the method's protobuf bytes (request or reply)
    [u32 CRC32 of bytes 4 .. end of payload, when FLAG_CRC]

Error payload: u8 flags (1 = nothing was stored), u8 code length, the `orbitmq-error` code name
(ASCII), u16 master address length, the master address (UTF-8), then the details (UTF-8).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"OR"
VERSION = 1
HEADER = struct.Struct(">I2sBBIH")
HEADER_SIZE = HEADER.size           # 14
_REST = HEADER_SIZE - 4             # header bytes counted by the length field
_MAGIC_VERSION = MAGIC + bytes([VERSION])
_CRC = struct.Struct(">I")
_ERR_HEAD = struct.Struct(">BB")
_U16 = struct.Struct(">H")

FLAG_RESPONSE = 1
FLAG_ERROR = 2
FLAG_ONEWAY = 4
FLAG_CRC = 8
KNOWN_FLAGS = FLAG_RESPONSE | FLAG_ERROR | FLAG_ONEWAY | FLAG_CRC
_PLAIN_FLAGS = FLAG_RESPONSE | FLAG_ERROR | FLAG_ONEWAY

MAX_REQUEST_ID = 0xFFFFFFFF
MAX_METHOD = 0xFFFF
DEFAULT_MAX_FRAME = 64 * 1024 * 1024   # payload bytes a decoder accepts unless told otherwise
ERR_NOT_STORED = 1


IN_PLACE = 64 * 1024   # a frame at least this long that arrives in parts is received in place: its payload is
                       # a bytearray of its own (`Frame.payload`), filled by each read without another copy

LOWAT_MIN = 64 * 1024          # a frame missing at least this much: wait for more than one segment
LOWAT_MAX = 4 * 1024 * 1024     # ... but never for more than this at once


def low_water(wanted: int) -> int:
    """The SO_RCVLOWAT a shell sets while `wanted` bytes of a frame are missing (1 = wake on any byte)."""
    return min(wanted, LOWAT_MAX) if wanted >= LOWAT_MIN else 1


class FrameError(Exception):
    """The peer sent bytes that are not a valid frame; the connection must be closed."""


@dataclass(slots=True)
class Frame:
    request_id: int
    method: int
    flags: int              # without FLAG_CRC (see `crc`)
    payload: bytes | bytearray   # a bytearray for a large frame received in parts (IN_PLACE)
    crc: bool = False       # the frame carried a CRC (checked)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)

    @property
    def oneway(self) -> bool:
        return bool(self.flags & FLAG_ONEWAY)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A failed call as the wire carries it (the gRPC path's status + trailing metadata)."""

    code: str               # an `orbitmq-error` name (common/error_codes.py), or one this side may not know
    details: str            # words for people
    master_address: str = ""
    not_stored: bool = False


def _head(request_id: int, method: int, n: int, flags: int, crc: bool) -> bytes:
    """The 14-byte header of a frame with an `n`-byte payload (arguments checked: ValueError)."""
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise ValueError(f"request id {request_id} out of range")
    if not 0 <= method <= MAX_METHOD:
        raise ValueError(f"method code {method} out of range")
    if flags & ~(FLAG_RESPONSE | FLAG_ERROR | FLAG_ONEWAY):
        raise ValueError(f"unknown flags {flags:#x}")
    if crc:
        return HEADER.pack(_REST + n + 4, MAGIC, VERSION, flags | FLAG_CRC, request_id, method)
    return HEADER.pack(_REST + n, MAGIC, VERSION, flags, request_id, method)


def encode(request_id: int, method: int, payload: bytes | bytearray | memoryview, flags: int = 0,
           crc: bool = False) -> bytes:
    """The bytes of one frame (FLAG_CRC is set by `crc`, not by `flags`)."""
    head = _head(request_id, method, len(payload), flags, crc)
    if crc:
        c = zlib.crc32(payload, zlib.crc32(memoryview(head)[4:]))
        return b"".join((head, payload, _CRC.pack(c)))
    return head + payload


def encode_parts(request_id: int, method: int, parts: tuple[bytes | bytearray | memoryview, ...], flags: int = 0,
                 crc: bool = False) -> list[bytes | bytearray | memoryview]:
    """`encode` of the payload b"".join(parts), left in parts (a writer sends them with one
    `sendmsg`, so a large part is never copied into a joined frame)."""
    head = _head(request_id, method, sum(map(len, parts)), flags, crc)
    if crc:
        c = zlib.crc32(memoryview(head)[4:])
        for part in parts:
            c = zlib.crc32(part, c)
        return [head, *parts, _CRC.pack(c)]
    return [head, *parts]


def encode_error(info: ErrorInfo) -> bytes:
    """The error payload of a failed call."""
    code = info.code.encode("ascii")
    master = info.master_address.encode()
    if not code or len(code) > 255 or len(master) > 0xFFFF:
        raise ValueError("error code must be 1..255 ASCII bytes and the master address below 64 KiB")
    return b"".join((_ERR_HEAD.pack(ERR_NOT_STORED if info.not_stored else 0, len(code)), code,
                     _U16.pack(len(master)), master, info.details.encode()))


def decode_error(payload: bytes) -> ErrorInfo:
    """Parse an error payload; FrameError if it is not one."""
    try:
        flags, n = _ERR_HEAD.unpack_from(payload, 0)
        code = payload[2:2 + n]
        if len(code) != n or not n or not all(33 <= b < 127 for b in code):
            raise FrameError("error payload: bad code name")
        (m,) = _U16.unpack_from(payload, 2 + n)
        start = 4 + n
        master = payload[start:start + m]
        if len(master) != m:
            raise FrameError("error payload: truncated master address")
        return ErrorInfo(code.decode("ascii"), payload[start + m:].decode("utf-8", "replace"),
                         master.decode("utf-8", "replace"), bool(flags & ERR_NOT_STORED))
    except struct.error:
        raise FrameError(f"error payload of {len(payload)} bytes is truncated") from None


class FrameDecoder:
    """Feed bytes as they arrive; `feed` returns every complete frame so far, in order.

    A length beyond `max_frame` payload bytes is refused as soon as its 4 bytes are seen (nothing
    is buffered for it); a wrong magic or version, unknown flags or a bad CRC is a FrameError.
    After a FrameError the decoder stays failed (every later `feed` raises it again).
    """

    __slots__ = ("_big", "_big_crc", "_big_have", "_big_head", "_buf", "_failed", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 0:
            raise ValueError("max_frame must be >= 0")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._failed: FrameError | None = None
        # a large frame received in place (see IN_PLACE): its payload (+ CRC) buffer, bytes in it so
        # far, its (request id, method, flags) and the CRC of its header (FLAG_CRC)
        self._big: bytearray | None = None
        self._big_have = 0
        self._big_head = (0, 0, 0)
        self._big_crc = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        if self._big is not None:
            return HEADER_SIZE + self._big_have
        return len(self._buf)

    @property
    def wanted(self) -> int:
        """Bytes still missing from the frame being received (0: none started, or its length unknown).
        A shell may wait for that many before reading again (fewer wake-ups for a large frame)."""
        if self._big is not None:
            return len(self._big) - self._big_have
        buf = self._buf
        if len(buf) < 4:
            return 0
        (length,) = _CRC.unpack_from(buf, 0)
        return max(0, length + 4 - len(buf))

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        if self._failed is not None:
            raise self._failed
        if self._big is not None:
            return self._feed_big(data)
        if not self._buf and type(data) is bytes and len(data) >= HEADER_SIZE:
            # fast path: exactly one whole frame without CRC (a sync call's request or reply)
            length, magic, version, flags, rid, method = HEADER.unpack_from(data)
            if (length + 4 == len(data) and magic == MAGIC and version == VERSION and not flags & ~_PLAIN_FLAGS
                    and length - _REST <= self.max_frame):
                return [Frame(rid, method, flags, data[HEADER_SIZE:])]
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data if type(data) is bytes else bytes(data)   # whole frames in one read: no buffer copy
        out: list[Frame] = []
        off = 0
        end = len(buf)
        limit = self.max_frame + _REST + 4
        try:
            while end - off >= 4:
                (length,) = _CRC.unpack_from(buf, off)
                if length < _REST or length > limit:
                    raise FrameError(f"frame length {length} outside {_REST}..{limit} "
                                     f"(max_frame {self.max_frame} payload bytes)")
                if end - off - 4 < length:
                    if end - off < HEADER_SIZE:
                        break
                    self._check_head(buf, off, length)   # fail early on garbage, before buffering it
                    if length >= IN_PLACE:
                        self._start_big(buf, off, end, length)
                        off = end
                    break
                _, magic, version, flags, rid, method = HEADER.unpack_from(buf, off)
                self._check_head(buf, off, length)
                stop = off + 4 + length
                if flags & FLAG_CRC:
                    stop -= 4
                    (want,) = _CRC.unpack_from(buf, stop)
                    if zlib.crc32(memoryview(buf)[off + 4:stop]) != want:
                        raise FrameError(f"CRC mismatch in frame {rid} (method {method})")
                    payload = bytes(memoryview(buf)[off + HEADER_SIZE:stop])
                    off = stop + 4
                    if len(payload) > self.max_frame:
                        raise FrameError(f"payload of {len(payload)} bytes exceeds max_frame {self.max_frame}")
                    out.append(Frame(rid, method, flags & ~FLAG_CRC, payload, True))
                    continue
                else:
                    payload = buf[off + HEADER_SIZE:stop] if type(buf) is bytes else \
                        bytes(memoryview(buf)[off + HEADER_SIZE:stop])
                    off = stop
                if len(payload) > self.max_frame:
                    raise FrameError(f"payload of {len(payload)} bytes exceeds max_frame {self.max_frame}")
                out.append(Frame(rid, method, flags, payload))
        except FrameError as e:
            self._failed = e
            self._buf = bytearray()
            raise
        if off < end:
            if buf is self._buf:
                del self._buf[:off]
            else:
                self._buf = bytearray(memoryview(buf)[off:])
        elif buf is self._buf:
            self._buf = bytearray()
        return out

    def _start_big(self, buf: bytes | bytearray, off: int, end: int, length: int) -> None:
        """Begin receiving a large frame in place: its payload (and CRC) buffer is allocated once,
        at its final size, and every later read is copied straight into it (no growing buffer, no
        copy of the whole frame at the end). The header was checked (`_check_head`)."""
        _, _, _, flags, rid, method = HEADER.unpack_from(buf, off)
        n = length - _REST             # payload, plus the CRC's 4 bytes with FLAG_CRC
        if n - (4 if flags & FLAG_CRC else 0) > self.max_frame:
            raise FrameError(f"payload of {n} bytes exceeds max_frame {self.max_frame}")
        big = bytearray(n)
        have = end - off - HEADER_SIZE
        big[:have] = memoryview(buf)[off + HEADER_SIZE:end]
        self._big, self._big_have, self._big_head = big, have, (rid, method, flags)
        self._big_crc = zlib.crc32(memoryview(buf)[off + 4:off + HEADER_SIZE]) if flags & FLAG_CRC else 0

    def _feed_big(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        big = self._big
        assert big is not None
        have = self._big_have
        k = min(len(data), len(big) - have)
        big[have:have + k] = memoryview(data)[:k] if k < len(data) else data
        have += k
        if have < len(big):
            self._big_have = have
            return []
        self._big = None
        self._big_have = 0
        rid, method, flags = self._big_head
        out: list[Frame]
        if flags & FLAG_CRC:
            (want,) = _CRC.unpack_from(big, len(big) - 4)
            if zlib.crc32(memoryview(big)[:-4], self._big_crc) != want:
                e = FrameError(f"CRC mismatch in frame {rid} (method {method})")
                self._failed = e
                raise e
            del big[-4:]        # (shrinks in place: no copy)
            out = [Frame(rid, method, flags & ~FLAG_CRC, big, True)]
        else:
            out = [Frame(rid, method, flags, big)]
        if k < len(data):
            out += self.feed(bytes(memoryview(data)[k:]))
        return out

    @staticmethod
    def _check_head(buf: bytes | bytearray, off: int, length: int) -> None:
        if buf[off + 4:off + 7] != _MAGIC_VERSION:
            raise FrameError(f"bad magic/version {bytes(buf[off + 4:off + 7])!r} (not an OrbitMQ framed "
                             f"peer, or protocol version other than {VERSION})")
        flags = buf[off + 7]
        if flags & ~KNOWN_FLAGS:
            raise FrameError(f"unknown flags {flags:#x}")
        if flags & FLAG_CRC and length < _REST + 4:
            raise FrameError("CRC flag on a frame too short to hold one")
