"""Replication framing codec: round trips, arbitrary chunking, corrupt and short frames."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbitmq.broker.ha.epochs import EpochEntry
from orbitmq.broker.ha.protocol import (
    HEADER_SIZE,
    VERSION,
    Ack,
    Data,
    FrameDecoder,
    FrameError,
    Hello,
    Refuse,
    Welcome,
    decode_all,
    encode,
    encode_data_parts,
    frame_crc,
)

i64 = st.integers(0, 2**62)
epochs_st = st.lists(st.tuples(st.integers(1, 5), st.integers(0, 1000)), max_size=5).map(
    lambda steps: tuple(_acc(steps)))


def _acc(steps):
    e = o = 0
    for de, do in steps:
        e += de
        o += do
        yield EpochEntry(e, o)


frame_st = st.one_of(
    st.builds(Hello, i64, st.booleans(), i64, epochs_st),
    st.builds(Welcome, i64, i64, i64, i64, i64, epochs_st),
    st.builds(lambda s, e, c, m, b: Data(s, e, min(s, e), c, m, b), i64, i64, i64, i64, st.binary(max_size=300)),
    st.builds(Ack, i64),
    st.builds(Refuse, st.text(max_size=20), st.text(max_size=50)),
)


@given(st.lists(frame_st, max_size=8), st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_roundtrip_in_any_chunking(frames, cuts):
    data = b"".join(encode(f) for f in frames)
    dec = FrameDecoder()
    out, pos, i = [], 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        out += dec.feed(data[pos:pos + step])
        pos += step
        i += 1
    dec.finish()
    assert out == frames


@given(st.builds(lambda s, b: Data(s, 3, 0, 5, s + len(b), b), i64, st.binary(max_size=2000)))
def test_data_parts_equal_whole_frame(frame):
    head, body = encode_data_parts(frame)
    assert head + body == encode(frame)


@given(frame_st, st.data())
def test_any_flipped_byte_is_detected(frame, data):
    raw = bytearray(encode(frame))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(FrameError):
        decode_all(bytes(raw))


@pytest.mark.parametrize("frame", [Ack(7), Data(0, 1, 0, 0, 0, b""), Hello(1, False, 0, ())])
def test_every_single_byte_flip_in_the_header_is_detected(frame):
    """Exhaustive over the header: every position, every xor mask (type and length bytes included)."""
    raw = encode(frame)
    for i in range(HEADER_SIZE):
        for mask in range(1, 256):
            bad = bytearray(raw)
            bad[i] ^= mask
            with pytest.raises(FrameError):
                decode_all(bytes(bad))


def test_short_and_malformed_frames():
    raw = encode(Ack(42))
    with pytest.raises(FrameError, match="ended inside a frame"):
        decode_all(raw[:-1])
    with pytest.raises(FrameError, match="ended inside a frame"):
        decode_all(raw[:HEADER_SIZE - 2])
    with pytest.raises(FrameError, match="bad magic"):
        decode_all(b"GET / HTTP/1.1\r\n\r\n")
    # a flipped type byte is caught by the CRC, which covers the header
    bad = bytearray(raw)
    bad[3] = 99
    with pytest.raises(FrameError, match="CRC mismatch"):
        decode_all(bytes(bad))
    # a well-formed header (CRC included) with an unknown type
    payload = raw[HEADER_SIZE:]
    unknown = struct.pack(">2sBBII", b"OH", VERSION, 99, len(payload), frame_crc(99, len(payload), payload))
    with pytest.raises(FrameError, match="unknown frame type"):
        decode_all(unknown + payload)
    # a frame of the old version (CRC over the payload only) is refused by name
    old = bytearray(raw)
    old[2] = 1
    with pytest.raises(FrameError, match="unsupported frame version 1"):
        decode_all(bytes(old))
    # a huge announced length is refused before buffering it
    huge = struct.pack(">2sBBII", b"OH", VERSION, 4, 1 << 30, 0)
    with pytest.raises(FrameError, match="exceeds"):
        FrameDecoder().feed(huge)
    # DATA whose epoch starts after the data
    with pytest.raises(FrameError, match="bad offsets"):
        decode_all(encode(Data(10, 2, 11, 0, 20, b"x")))
    with pytest.raises(ValueError):
        encode("not a frame")  # type: ignore[arg-type]
