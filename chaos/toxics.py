"""Toxic definitions: the types, their attributes, validation, JSON form and the slicer's split rule.

Pure (randomness is passed in). Owns what a toxic *is*: `Toxic` (name, type, stream, toxicity,
attributes), the table of types with their integer attributes in the reference server's order,
the checks the reference server lacks where it would crash (slicer sizes, negative bandwidth),
and `slice_points`. How a toxic acts on bytes lives in chaos/toxics_stages.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from orbitmq.chaos.toxiproxy_decode import INT64, DecodeError, decode_struct, json_kind

UPSTREAM, DOWNSTREAM = "upstream", "downstream"
DIRECTIONS = (UPSTREAM, DOWNSTREAM)  # the order GET lists toxics in


@dataclass(frozen=True)
class ToxicType:
    """One toxic type: its attribute names (JSON, in the reference order) and its input buffer."""

    name: str
    attributes: tuple[str, ...]
    buffer: int = 0            # chunks the stage's input holds (latency pipelines up to 1024)
    go_struct: str = ""        # the reference's struct name, for error messages


TOXIC_TYPES: dict[str, ToxicType] = {
    t.name: t
    for t in (
        ToxicType("latency", ("latency", "jitter"), buffer=1024, go_struct="toxics.LatencyToxic"),
        ToxicType("bandwidth", ("rate",), go_struct="toxics.BandwidthToxic"),
        ToxicType("slow_close", ("delay",), go_struct="toxics.SlowCloseToxic"),
        ToxicType("timeout", ("timeout",), go_struct="toxics.TimeoutToxic"),
        ToxicType("reset_peer", ("timeout",), go_struct="toxics.ResetToxic"),
        ToxicType("slicer", ("average_size", "size_variation", "delay"), go_struct="toxics.SlicerToxic"),
        ToxicType("limit_data", ("bytes",), go_struct="toxics.LimitDataToxic"),
        ToxicType("noop", (), go_struct="toxics.NoopToxic"),
    )
}


class AttributeError_(ValueError):
    """Attributes that decode but that the embedded server refuses (the reference would crash)."""


def parse_direction(stream: str) -> str | None:
    """'upstream'/'downstream' matched case-insensitively, else None."""
    low = stream.lower()
    return low if low in DIRECTIONS else None


@dataclass(frozen=True)
class Toxic:
    """A toxic as the API shows it. `stream` is kept as sent; `direction` is its parsed form."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        d = parse_direction(self.stream)
        assert d is not None, self.stream
        return d

    @property
    def spec(self) -> ToxicType:
        return TOXIC_TYPES[self.type]

    def attr(self, name: str) -> int:
        return int(self.attributes.get(name, 0))

    def to_json(self) -> dict[str, Any]:
        """The reference's field order: attributes, name, type, stream, toxicity."""
        return {
            "attributes": {a: self.attr(a) for a in self.spec.attributes},
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": json_float(self.toxicity),
        }


def json_float(x: float) -> float | int:
    """Print integral floats as integers, as Go does for float32 (1 rather than 1.0)."""
    return int(x) if x.is_integer() and abs(x) < 1e21 else x


def decode_attributes(type_name: str, value: Any, current: dict[str, int]) -> dict[str, int]:
    """Merge a JSON `attributes` value into `current` (all int64 fields); DecodeError on bad types."""
    spec = TOXIC_TYPES[type_name]
    fields = {a: INT64 for a in spec.attributes}
    base = {a: current.get(a, 0) for a in spec.attributes}
    if value is not None and not isinstance(value, dict):
        raise DecodeError(
            f"json: cannot unmarshal {json_kind(value)} into Go struct field .attributes of type {spec.go_struct}")
    return decode_struct(value, fields, base, f"{spec.go_struct}.attributes")


def validate_attributes(type_name: str, attrs: dict[str, int]) -> None:
    """Refuse attribute values on which the reference server crashes or hangs (AttributeError_)."""
    if type_name == "bandwidth" and attrs.get("rate", 0) < 0:
        raise AttributeError_("bandwidth rate must be >= 0 (the reference server panics on a negative rate)")
    if type_name == "slicer":
        avg, var = attrs.get("average_size", 0), attrs.get("size_variation", 0)
        if avg < 1:
            raise AttributeError_(
                f"slicer average_size must be >= 1, got {avg} (the reference server recurses forever)")
        if var < 0 or var >= avg:
            raise AttributeError_(
                f"slicer size_variation must be in [0, average_size), got {var} with average_size {avg}"
                " (the reference server crashes on this, Shopify/toxiproxy#541)")


def slice_points(size: int, average: int, variation: int, rng: random.Random) -> list[tuple[int, int]]:
    """Split [0, size) like the reference slicer: halve recursively, the split point moved by a
    uniform offset in [-variation, variation), until every piece is at most average+variation.

    Requires 0 <= variation < average (validate_attributes); pieces are then never empty."""
    out: list[tuple[int, int]] = []
    stack = [(0, size)]
    while stack:
        start, end = stack.pop()
        if (end - start) - average <= variation:
            out.append((start, end))
            continue
        mid = start + (end - start) // 2
        if variation > 0:
            mid += rng.randrange(variation * 2) - variation
        stack.append((mid, end))   # right after left: the stack pops left first
        stack.append((start, mid))
    return out
