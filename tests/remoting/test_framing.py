"""The framed protocol's codec (pure): round trips in any chunking, error payloads, malformed input."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.common import framing
from orbitmq.common.framing import (
    FLAG_CRC,
    FLAG_ERROR,
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    HEADER_SIZE,
    ErrorInfo,
    Frame,
    FrameDecoder,
    FrameError,
    decode_error,
    encode,
    encode_error,
)

frames_st = st.lists(st.tuples(st.integers(0, framing.MAX_REQUEST_ID), st.integers(0, framing.MAX_METHOD),
                               st.sampled_from([0, FLAG_RESPONSE, FLAG_RESPONSE | FLAG_ERROR, FLAG_ONEWAY]),
                               st.binary(max_size=300), st.booleans()), min_size=1, max_size=8)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


@given(frames_st, st.lists(st.integers(0, 10_000), max_size=12))
def test_frames_round_trip_in_any_chunking(frames, cuts):
    data = b"".join(encode(rid, m, p, fl, crc=c) for rid, m, fl, p, c in frames)
    dec = FrameDecoder(max_frame=1024)
    got: list[Frame] = []
    for chunk in _chunks(data, cuts):
        got.extend(dec.feed(chunk))
    assert [(f.request_id, f.method, f.flags, f.payload) for f in got] == [(rid, m, fl, p) for rid, m, fl, p, _ in frames]
    assert dec.buffered == 0


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
       st.text(max_size=200), st.text(max_size=60), st.booleans())
def test_error_payload_round_trip(code, details, master, not_stored):
    info = ErrorInfo(code, details, master, not_stored)
    assert decode_error(encode_error(info)) == info


def test_layout_is_the_documented_one():
    data = encode(7, 1, b"abc", FLAG_RESPONSE)
    assert data == struct.pack(">I2sBBIH", 10 + 3, b"OR", 1, FLAG_RESPONSE, 7, 1) + b"abc"
    with_crc = encode(7, 1, b"abc", crc=True)
    assert with_crc[7] == FLAG_CRC
    assert struct.unpack(">I", with_crc[-4:])[0] == zlib.crc32(with_crc[4:-4])


def test_bad_arguments_are_value_errors():
    for args in ((-1, 1, b""), (2**32, 1, b""), (1, 2**16, b"")):
        with pytest.raises(ValueError):
            encode(*args)
    with pytest.raises(ValueError):
        encode(1, 1, b"", flags=FLAG_CRC)
    with pytest.raises(ValueError):
        encode_error(ErrorInfo("", "x"))


@pytest.mark.parametrize("mutate, words", [
    (lambda b: b[:4] + b"XX" + b[6:], "bad magic"),
    (lambda b: b[:6] + b"\x02" + b[7:], "bad magic/version"),
    (lambda b: b[:7] + b"\x40" + b[8:], "unknown flags"),
    (lambda b: struct.pack(">I", 3) + b[4:], "frame length 3"),
])
def test_malformed_headers_are_frame_errors(mutate, words):
    dec = FrameDecoder()
    with pytest.raises(FrameError, match=words):
        dec.feed(mutate(encode(1, 1, b"payload")))
    with pytest.raises(FrameError):      # the decoder stays failed
        dec.feed(encode(1, 1, b"ok"))


def test_crc_mismatch_is_caught_for_any_flipped_byte():
    good = encode(9, 2, b"some payload", crc=True)
    for i in range(4, len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x01
        with pytest.raises(FrameError):
            FrameDecoder().feed(bytes(bad))


def test_oversized_frame_is_refused_from_its_length_alone():
    dec = FrameDecoder(max_frame=100)
    head = struct.pack(">I2sBBIH", 10 + 10_000_000, b"OR", 1, 0, 1, 1)
    with pytest.raises(FrameError, match="max_frame 100"):
        dec.feed(head[:4])          # nothing more needed: the length is beyond the limit
    assert dec.buffered == 0
    ok = FrameDecoder(max_frame=100)
    assert ok.feed(encode(1, 1, b"x" * 100))[0].payload == b"x" * 100
    with pytest.raises(FrameError):
        FrameDecoder(max_frame=100).feed(encode(1, 1, b"x" * 101))


def test_garbage_fails_before_the_whole_frame_arrived():
    dec = FrameDecoder()
    with pytest.raises(FrameError):   # an HTTP/2 preface (a gRPC client on the wrong port)
        dec.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")


def test_truncated_error_payload():
    good = encode_error(ErrorInfo("NOT_MASTER", "no", "127.0.0.1:1", True))
    for n in range(0, 2 + len("NOT_MASTER") + 2 + len("127.0.0.1:1")):
        with pytest.raises(FrameError):
            decode_error(good[:n])
    with pytest.raises(FrameError):
        decode_error(b"\x00\x03a b\x00\x00")   # a space in a code name


@settings(max_examples=300)
@given(st.binary(max_size=200), st.lists(st.integers(0, 300), max_size=5))
def test_random_bytes_give_frames_or_frame_error_only(data, cuts):
    dec = FrameDecoder(max_frame=64)
    try:
        for chunk in _chunks(data, cuts):
            for f in dec.feed(chunk):
                assert len(f.payload) <= 64
    except FrameError:
        pass


def test_header_size():
    assert HEADER_SIZE == 14
