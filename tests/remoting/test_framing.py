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


@given(frames_st, st.lists(st.integers(0, 10_000), max_size=12))
def test_frames_received_in_place_round_trip_in_any_chunking(frames, cuts):
    """With the in-place threshold lowered, every frame that arrives in parts is received into a
    buffer of its own: the same frames come out, and `wanted`/`buffered` track the one in progress."""
    old = framing.IN_PLACE
    framing.IN_PLACE = framing.HEADER_SIZE - 4
    try:
        data = b"".join(encode(rid, m, p, fl, crc=c) for rid, m, fl, p, c in frames)
        dec = FrameDecoder(max_frame=1024)
        got: list[Frame] = []
        fed = 0
        for chunk in _chunks(data, cuts):
            got.extend(dec.feed(chunk))
            fed += len(chunk)
            done = sum(len(encode(f.request_id, f.method, f.payload, f.flags, crc=f.crc)) for f in got)
            assert dec.buffered == fed - done
            if dec.wanted:
                assert dec.buffered + dec.wanted == len(encode(*frames[len(got)][:2], frames[len(got)][3],
                                                               frames[len(got)][2], crc=frames[len(got)][4]))
    finally:
        framing.IN_PLACE = old
    assert [(f.request_id, f.method, f.flags, bytes(f.payload)) for f in got] == \
        [(rid, m, fl, p) for rid, m, fl, p, _ in frames]
    assert dec.buffered == 0


@pytest.mark.parametrize("crc", [False, True])
def test_a_large_frame_in_parts_lands_in_one_buffer(crc):
    payload = bytes(range(256)) * 1200          # 300 KiB: over IN_PLACE
    data = encode(3, 5, payload, FLAG_RESPONSE, crc=crc) + encode(4, 5, b"next")
    dec = FrameDecoder()
    assert dec.feed(data[:1000]) == []
    assert dec.wanted == len(data) - len(encode(4, 5, b"next")) - 1000
    assert dec.feed(data[1000:200_000]) == []
    got = dec.feed(data[200_000:])               # the rest of it and the small frame behind it
    assert [(f.request_id, f.crc) for f in got] == [(3, crc), (4, False)]
    assert type(got[0].payload) is bytearray and got[0].payload == payload and got[1].payload == b"next"
    assert dec.buffered == 0 and dec.wanted == 0


def test_any_flipped_byte_of_a_large_crc_frame_in_parts_is_caught():
    good = encode(9, 2, b"p" * (framing.IN_PLACE + 10), crc=True)
    for i in [*range(4, 40), *range(len(good) - 40, len(good))]:
        bad = bytearray(good)
        bad[i] ^= 0x01
        dec = FrameDecoder()
        with pytest.raises(FrameError):
            dec.feed(bytes(bad[:30]))
            dec.feed(bytes(bad[30:]))
        with pytest.raises(FrameError):   # and stays failed
            dec.feed(encode(1, 1, b"ok"))


def test_a_large_frame_over_max_frame_is_refused_before_its_buffer_is_made():
    dec = FrameDecoder(max_frame=framing.IN_PLACE)
    big = encode(1, 1, b"x" * (framing.IN_PLACE + 1))     # within the length check's CRC allowance
    with pytest.raises(FrameError, match="exceeds max_frame"):
        dec.feed(big[:HEADER_SIZE + 10])
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
