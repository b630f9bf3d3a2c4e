"""Pure pieces of the embedded Toxiproxy: Go-style JSON decoding, toxic definitions and
validation, the slicer's split rule, and HTTP framing."""

from __future__ import annotations

import json
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from orbitmq.chaos import toxiproxy_decode as dec
from orbitmq.chaos.toxics import (
    TOXIC_TYPES,
    AttributeError_,
    Toxic,
    decode_attributes,
    json_float,
    parse_direction,
    slice_points,
    validate_attributes,
)
from orbitmq.chaos.toxiproxy_http import HttpError, parse_chunk_size, parse_head, render

# -- JSON decoding -------------------------------------------------------------------------------


def test_first_value_ignores_trailing_bytes_and_reports_eof():
    assert dec.first_value(b'  {"a": 1} trailing garbage') == {"a": 1}
    assert dec.first_value(b"null") is None
    with pytest.raises(dec.DecodeError, match="EOF"):
        dec.first_value(b"")
    with pytest.raises(dec.DecodeError, match="EOF"):
        dec.first_value(b" \n ")
    with pytest.raises(dec.DecodeError, match="unexpected EOF"):
        dec.first_value(b'{"a": ')
    with pytest.raises(dec.DecodeError):
        dec.first_value(b"{nope}")
    for const in (b"NaN", b"Infinity", b"-Infinity", b'{"x": NaN}'):
        with pytest.raises(dec.DecodeError):
            dec.first_value(const)


FIELDS = {"name": dec.STRING, "enabled": dec.BOOL, "toxicity": dec.FLOAT32, "n": dec.INT64, "o": dec.OBJECT}
BASE = {"name": "x", "enabled": True, "toxicity": 1.0, "n": 5, "o": None}


def test_decode_struct_matches_go_rules():
    out = dec.decode_struct({"NAME": "a", "name": "b", "unknown": [1], "n": None}, FIELDS, BASE, "p.T")
    assert out["name"] == "b" and out["n"] == 5  # exact key wins over folded one; null changes nothing
    assert dec.decode_struct({"Name": "c"}, FIELDS, BASE, "p.T")["name"] == "c"  # case-insensitive
    assert dec.decode_struct(None, FIELDS, BASE, "p.T") == BASE
    assert BASE["name"] == "x"  # the input is never modified
    with pytest.raises(dec.DecodeError, match="cannot unmarshal array into Go value of type p.T"):
        dec.decode_struct([], FIELDS, BASE, "p.T")
    with pytest.raises(dec.DecodeError, match="cannot unmarshal string into Go value"):
        dec.decode_struct("s", FIELDS, BASE, "p.T")


@pytest.mark.parametrize("field,value,ok", [
    ("name", "s", True), ("name", 1, False), ("name", True, False), ("name", {}, False),
    ("enabled", False, True), ("enabled", 0, False), ("enabled", "true", False),
    ("toxicity", 0, True), ("toxicity", 0.5, True), ("toxicity", -3, True), ("toxicity", 2.5, True),
    ("toxicity", "1", False), ("toxicity", True, False), ("toxicity", 1e39, False),
    ("n", 7, True), ("n", -7, True), ("n", 2**63 - 1, True), ("n", 2**63, False), ("n", -(2**63), True),
    ("n", 1.0, False), ("n", 1.5, False), ("n", "3", False), ("n", False, False),
    ("o", {}, True), ("o", {"a": 1}, True), ("o", [], False), ("o", 3, False),
])
def test_field_types(field, value, ok):
    if ok:
        dec.decode_struct({field: value}, FIELDS, BASE, "p.T")
    else:
        with pytest.raises(dec.DecodeError, match=f"Go struct field T.{field}"):
            dec.decode_struct({field: value}, FIELDS, BASE, "p.T")


@given(hs.floats(min_value=-3e38, max_value=3e38, allow_nan=False))
def test_float32_rounding_is_shortest_and_exact(x):
    y = dec.to_float32(x)
    f32 = struct.unpack("<f", struct.pack("<f", x))[0]
    assert struct.unpack("<f", struct.pack("<f", y))[0] == f32
    assert len(repr(y)) <= max(len(repr(f32)), 12)


def test_float32_prints_like_go():
    assert dec.to_float32(0.1) == 0.1
    assert dec.to_float32(1 / 3) == 0.33333334
    assert json_float(1.0) == 1 and isinstance(json_float(1.0), int)
    assert json_float(0.5) == 0.5


@given(hs.recursive(hs.none() | hs.booleans() | hs.integers() | hs.floats(allow_nan=False) | hs.text(),
                    lambda c: hs.lists(c, max_size=3) | hs.dictionaries(hs.text(max_size=8), c, max_size=4),
                    max_leaves=12))
def test_decode_struct_never_fails_other_than_decode_error(value):
    try:
        out = dec.decode_struct(value, FIELDS, BASE, "p.T")
    except dec.DecodeError:
        return
    assert set(out) == set(BASE)
    assert isinstance(out["name"], str) and isinstance(out["enabled"], bool)


# -- toxic definitions -------------------------------------------------------------------------


def test_every_type_lists_attributes_in_reference_order():
    assert {n: t.attributes for n, t in TOXIC_TYPES.items()} == {
        "latency": ("latency", "jitter"), "bandwidth": ("rate",), "slow_close": ("delay",),
        "timeout": ("timeout",), "reset_peer": ("timeout",),
        "slicer": ("average_size", "size_variation", "delay"), "limit_data": ("bytes",), "noop": ()}
    assert TOXIC_TYPES["latency"].buffer == 1024


def test_direction_parse_is_case_insensitive_and_strict():
    assert parse_direction("UpStream") == "upstream"
    assert parse_direction("downstream") == "downstream"
    for bad in ("", "up", "both", " upstream"):
        assert parse_direction(bad) is None


def test_toxic_json_lists_every_attribute_including_zeros():
    t = Toxic("l", "latency", "UPSTREAM", 0.5, {"latency": 10})
    assert t.direction == "upstream"
    assert json.dumps(t.to_json()) == json.dumps(
        {"attributes": {"latency": 10, "jitter": 0}, "name": "l", "type": "latency", "stream": "UPSTREAM",
         "toxicity": 0.5})


def test_attributes_merge_and_type_errors():
    assert decode_attributes("latency", {"jitter": 5}, {"latency": 100, "jitter": 1}) == {"latency": 100, "jitter": 5}
    assert decode_attributes("latency", None, {}) == {"latency": 0, "jitter": 0}
    assert decode_attributes("latency", {"LATENCY": 3, "other": "x"}, {}) == {"latency": 3, "jitter": 0}
    with pytest.raises(dec.DecodeError, match="latency"):
        decode_attributes("latency", {"latency": "100"}, {})
    with pytest.raises(dec.DecodeError, match="attributes"):
        decode_attributes("timeout", [1], {})
    assert decode_attributes("noop", {"whatever": 1}, {}) == {}


@pytest.mark.parametrize("type_name,attrs,ok", [
    ("bandwidth", {"rate": 0}, True), ("bandwidth", {"rate": 100}, True), ("bandwidth", {"rate": -1}, False),
    ("slicer", {"average_size": 10, "size_variation": 5}, True),
    ("slicer", {"average_size": 10, "size_variation": 9}, True),
    ("slicer", {"average_size": 1, "size_variation": 0}, True),
    ("slicer", {"average_size": 10, "size_variation": 10}, False),
    ("slicer", {"average_size": 1, "size_variation": 20}, False),
    ("slicer", {"average_size": 0, "size_variation": 0}, False),
    ("slicer", {"average_size": -5, "size_variation": 0}, False),
    ("slicer", {"average_size": 10, "size_variation": -1}, False),
    ("latency", {"latency": -5, "jitter": -1}, True),      # the reference accepts these; so do we
    ("timeout", {"timeout": -1}, True), ("limit_data", {"bytes": -1}, True),
])
def test_validation_only_where_the_reference_breaks(type_name, attrs, ok):
    if ok:
        validate_attributes(type_name, attrs)
    else:
        with pytest.raises(AttributeError_):
            validate_attributes(type_name, attrs)


@settings(max_examples=300)
@given(size=hs.integers(0, 5000), avg=hs.integers(1, 300), var_frac=hs.floats(0, 0.999), seed=hs.integers(0, 2**32))
def test_slice_points_cover_the_chunk_in_bounded_pieces(size, avg, var_frac, seed):
    var = int(avg * var_frac)
    validate_attributes("slicer", {"average_size": avg, "size_variation": var})
    pieces = slice_points(size, avg, var, random.Random(seed))
    assert pieces[0][0] == 0 and pieces[-1][1] == size
    for (_a, b), (c, _d) in zip(pieces, pieces[1:], strict=False):
        assert b == c
    for a, b in pieces:
        assert b - a <= avg + var
        assert size == 0 or b > a


def test_slice_points_without_variation_halves():
    assert slice_points(100, 25, 0, random.Random(1)) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert slice_points(10, 25, 0, random.Random(1)) == [(0, 10)]


# -- HTTP framing ---------------------------------------------------------------------------------


def test_parse_head_and_its_properties():
    h = parse_head(b"POST http://127.0.0.1:8474/proxies?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                   b"X-A: 1\r\nx-a: 2\r\nExpect: 100-continue")
    assert h.method == "POST" and h.path == "/proxies?x=1" and h.content_length() == 12
    assert h.headers["x-a"] == "1, 2" and h.keep_alive and h.expects_continue
    h10 = parse_head(b"GET / HTTP/1.0\r\n")
    assert not h10.keep_alive and not h10.expects_continue
    assert not parse_head(b"GET / HTTP/1.1\r\nConnection: close").keep_alive
    chunked = parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5")
    assert chunked.chunked and "content-length" not in chunked.headers


@pytest.mark.parametrize("raw,status", [
    (b"GET /\r\n", 400), (b"GET / HTTP/2.0", 400), (b" / HTTP/1.1", 400), (b"GET / HTTP/1.1\r\nbad", 400),
    (b"GET / HTTP/1.1\r\n Folded: x", 400), (b"G" * 70000, 431),
])
def test_parse_head_rejects(raw, status):
    with pytest.raises(HttpError) as e:
        parse_head(raw)
    assert e.value.status == status


def test_content_length_and_chunk_sizes():
    with pytest.raises(HttpError):
        parse_head(b"POST / HTTP/1.1\r\nContent-Length: -1").content_length()
    with pytest.raises(HttpError) as e:
        parse_head(b"POST / HTTP/1.1\r\nContent-Length: 99999999999").content_length()
    assert e.value.status == 413
    assert parse_chunk_size(b"1a;ext=1\r\n") == 26
    with pytest.raises(HttpError):
        parse_chunk_size(b"zz\r\n")


@given(hs.binary(max_size=300))
def test_parse_head_fails_only_with_http_error(raw):
    try:
        parse_head(raw)
    except HttpError as e:
        assert e.status in (400, 431)


def test_render():
    out = render(201, b'{"a":1}', "application/json", {"X-Toxiproxy-Request-Id": "r"}, now=0)
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 201 Created\r\n") and body == b'{"a":1}'
    assert b"Content-Length: 7" in head and b"Date: Thu, 01 Jan 1970 00:00:00 GMT" in head
    no_content = render(204, b"ignored", keep_alive=False, now=0)
    assert no_content.endswith(b"\r\n\r\n") and b"Content-Length" not in no_content
    assert b"Connection: close" in no_content
