"""Request-body decoding with the semantics of Go's `encoding/json`, as the Toxiproxy server applies it.

Pure. Owns: reading the first JSON value of a body (trailing bytes ignored, empty body = "EOF"),
matching object keys to struct fields (exact name, else case-insensitive; unknown keys ignored;
`null` leaves a field unchanged; a later duplicate key wins) and the value types Go accepts for
string, bool, float32 and int64 fields. Every failure is a `DecodeError` whose text follows Go's.
Never touches the registry or sockets.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38

STRING, BOOL, FLOAT32, INT64, OBJECT = "string", "bool", "float32", "int64", "object"


class DecodeError(ValueError):
    """The body is not valid JSON, or a value has the wrong type for its field (Go's message)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def first_value(body: bytes) -> Any:
    """The first JSON value in `body`, like `json.NewDecoder(body).Decode` (what follows is ignored)."""
    text = body.decode("utf-8", errors="replace")
    i = 0
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    if i == len(text):
        raise DecodeError("EOF")
    try:
        value, _end = _DECODER.raw_decode(text, i)
    except json.JSONDecodeError as e:
        if e.pos >= len(text):
            raise DecodeError("unexpected EOF") from None
        raise DecodeError(f"invalid JSON at offset {e.pos}: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise DecodeError(str(e)) from None
    return value


def json_kind(value: Any) -> str:
    """Go's name for a JSON value's kind, as used in its type errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _number_text(value: int | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def to_float32(value: float) -> float:
    """Round to the nearest float32 and return the shortest decimal that reads back as that float32.

    So 0.1 stays 0.1 (as Go prints a float32), not 0.10000000149011612."""
    f32 = struct.unpack("<f", struct.pack("<f", value))[0]
    if f32 == 0 or not math.isfinite(f32):
        return f32
    for digits in range(1, 10):
        short = float(f"{f32:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", short))[0] == f32:
            return short
    return f32


def check_value(value: Any, kind: str, where: str) -> Any:
    """Return `value` converted for a Go field of `kind`, or raise DecodeError naming `where`."""
    def bad() -> DecodeError:
        shown = json_kind(value)
        if shown == "number":
            shown = f"number {_number_text(value)}"
        go_type = {OBJECT: "struct"}.get(kind, kind)
        return DecodeError(f"json: cannot unmarshal {shown} into Go struct field {where} of type {go_type}")

    if kind == STRING:
        if not isinstance(value, str):
            raise bad()
        return value
    if kind == BOOL:
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind == INT64:
        if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
            raise bad()
        return value
    if kind == FLOAT32:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        if abs(float(value)) > FLOAT32_MAX:
            raise bad()
        return to_float32(float(value))
    if kind == OBJECT:
        if not isinstance(value, dict):
            raise bad()
        return value
    raise AssertionError(f"unknown field kind {kind}")


def decode_struct(value: Any, fields: dict[str, str], into: dict[str, Any], type_name: str) -> dict[str, Any]:
    """Decode a JSON object into a copy of `into` (field name -> current value), Go-style.

    `fields` maps each JSON field name to its kind. `null` (the whole value or one field) changes
    nothing; a non-object raises DecodeError. The first type error is raised after every field was
    tried, as Go does; the returned dict is only produced when there was none."""
    out = dict(into)
    if value is None:
        return out
    if not isinstance(value, dict):
        raise DecodeError(f"json: cannot unmarshal {json_kind(value)} into Go value of type {type_name}")
    lowered = {name.lower(): name for name in fields}
    first_error: DecodeError | None = None
    for key, item in value.items():
        name = key if key in fields else lowered.get(key.lower())
        if name is None or item is None:
            continue
        try:
            out[name] = check_value(item, fields[name], f"{type_name.rpartition('.')[2]}.{name}")
        except DecodeError as e:
            first_error = first_error or e
    if first_error is not None:
        raise first_error
    return out
