"""A protobuf message's last bytes field taken out without copying it (pure).

A producer's SendRequest carries its batch record (hundreds of KiB) as its last field. Parsing the
whole request copies the record into the parsed message, and each read of the field copies it
again. `split_tail` walks the few fields in front of it instead and returns the record as a view of
the received bytes, and `tail_key` is what a writer puts between the other fields and the record
(protobuf reads fields in any order, and the last occurrence of a field wins, so the two forms mean
the same message). Anything unexpected returns None: the caller then parses the message as usual,
which reports malformed input the usual way.
"""

from __future__ import annotations

_LEN = 2   # wire type of length-delimited fields (bytes, strings, messages)


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it); ValueError past `end` or beyond 10 bytes."""
    out = shift = 0
    while pos < end and shift < 70:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7
    raise ValueError("truncated varint")


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tail_key(field: int, length: int) -> bytes:
    """The key and length that precede a `length`-byte value of bytes field `field`."""
    return encode_varint(field << 3 | _LEN) + encode_varint(length)


def split_tail(payload: bytes | bytearray | memoryview, field: int,
               max_fields: int = 16) -> tuple[memoryview, memoryview] | None:
    """(the fields before it, its value) when the last field of the serialized message `payload`
    is the bytes field `field` running to its end; None otherwise (or after `max_fields` fields)."""
    mv = memoryview(payload)
    end = len(mv)
    pos = 0
    try:
        for _ in range(max_fields):
            if pos >= end:
                return None
            start = pos
            key, pos = _varint(mv, pos, end)
            wt = key & 7
            if wt == 0:
                _, pos = _varint(mv, pos, end)
            elif wt == 1:
                pos += 8
            elif wt == 5:
                pos += 4
            elif wt == _LEN:
                n, pos = _varint(mv, pos, end)
                if key >> 3 == field and pos + n == end:
                    return mv[:start], mv[pos:]
                pos += n
            else:
                return None
    except ValueError:
        return None
    return None
