"""Fuzzing helpers: protobuf requests with absurd fields built from a message's descriptor, raw
calls on any gRPC method (identity serializers), the verdict on each answer, and the counts of
inputs tried per target (printed at the end of the pytest run by tests/security/conftest.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import grpc
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message
from hypothesis import strategies as st

COUNTS: Counter[str] = Counter()        # target -> inputs tried
OUTCOMES: Counter[str] = Counter()      # status names seen, over every target

# names that exist on the fuzzed servers (so absurd requests reach deeper code), next to absurd ones
NAMES = ["fuzz-play", "fuzz-g", "%DLQ%fuzz-g", "%RETRY%fuzz-g", "", " ", "a" * 300, "x" * 70_000, "../../etc/passwd",
         "\x00", "名字", "a|b", "*", "T;DROP", "\ud7ff"]
I32 = [0, 1, -1, 2, 7, 2**31 - 1, -(2**31), 1024, 1025]
I64 = [0, 1, -1, 2**63 - 1, -(2**63), 2**62, 2**32, -5]


def _scalar(f: FD) -> st.SearchStrategy:
    t = f.type
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return st.sampled_from(I32) | st.integers(-(2**31), 2**31 - 1)
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return st.sampled_from(I64) | st.integers(-(2**63), 2**63 - 1)
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return st.sampled_from([0, 1, 2**32 - 1]) | st.integers(0, 2**32 - 1)
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return st.sampled_from([0, 1, 2**64 - 1]) | st.integers(0, 2**64 - 1)
    if t == FD.TYPE_BOOL:
        return st.booleans()
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return st.sampled_from([0.0, -1.0, 1e300 if t == FD.TYPE_DOUBLE else 3e38, float("nan"), float("inf")])
    if t == FD.TYPE_STRING:
        return st.sampled_from(NAMES) | st.text(max_size=24)
    if t == FD.TYPE_BYTES:
        return st.sampled_from([b"", b"\x00", b"body", b"\xff" * 300, b"z" * ((4 << 20) + 1)]) | st.binary(max_size=64)
    if t == FD.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.sampled_from(known) | st.integers(-5, 1000)   # unknown values too (proto3 enums are open)
    raise AssertionError(f"unhandled field type {t} of {f.full_name}")


def _is_map(f: FD) -> bool:
    return f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry


def _value(f: FD, depth: int) -> st.SearchStrategy:
    if f.type == FD.TYPE_MESSAGE:
        return messages(f.message_type._concrete_class, depth + 1)
    return _scalar(f)


@st.composite
def _fill(draw, cls: type[Message], depth: int) -> Message:
    msg = cls()
    if depth > 3:
        return msg
    for f in cls.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if _is_map(f):
            kf, vf = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            entries = draw(st.dictionaries(_scalar(kf), _value(vf, depth), max_size=3))
            target = getattr(msg, f.name)
            for k, v in entries.items():
                if vf.type == FD.TYPE_MESSAGE:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif f.is_repeated:
            items = draw(st.lists(_value(f, depth), max_size=3))
            target = getattr(msg, f.name)
            for v in items:
                if f.type == FD.TYPE_MESSAGE:
                    target.add().CopyFrom(v)
                else:
                    target.append(v)
        elif f.type == FD.TYPE_MESSAGE:
            getattr(msg, f.name).CopyFrom(draw(_value(f, depth)))
        else:
            setattr(msg, f.name, draw(_scalar(f)))
    return msg


def messages(cls: type[Message], depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `cls` whose fields (each set or not) take absurd and ordinary values."""
    return _fill(cls, depth)


def request_bytes(cls: type[Message]) -> st.SearchStrategy[bytes]:
    """What a fuzzed call sends: random bytes, a valid message with absurd fields, or such a
    message with a few bytes flipped or cut."""
    valid = messages(cls).map(lambda m: m.SerializeToString())

    @st.composite
    def mangled(draw) -> bytes:
        b = bytearray(draw(valid))
        if b and draw(st.booleans()):
            for _ in range(draw(st.integers(1, 3))):
                i = draw(st.integers(0, len(b) - 1))
                b[i] ^= draw(st.integers(1, 255))
        if b and draw(st.booleans()):
            b = b[: draw(st.integers(0, len(b)))]
        return bytes(b)

    return st.one_of(st.binary(max_size=200), valid, mangled())


@dataclass(frozen=True)
class Method:
    service: str      # full name, e.g. orbitmq.v1.Broker
    name: str
    request: type[Message]
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


def methods_of(module, service_name: str) -> list[Method]:
    """Every method of a service from its generated `_pb2` module."""
    sd = module.DESCRIPTOR.services_by_name[service_name]
    return [Method(sd.full_name, m.name, m.input_type._concrete_class, m.client_streaming, m.server_streaming)
            for m in sd.methods]


@dataclass
class Answer:
    status: grpc.StatusCode
    error: str           # the orbitmq-error name ("" if none)
    details: str


def call(channel: grpc.Channel, m: Method, payloads: list[bytes], timeout: float,
         metadata: tuple | None = None) -> Answer:
    """One call with raw request bytes (a stream sends every payload, then half-closes)."""
    try:
        if not m.client_streaming and not m.server_streaming:
            channel.unary_unary(m.path).with_call(payloads[0], timeout=timeout, metadata=metadata)
            return Answer(grpc.StatusCode.OK, "", "")
        if not m.client_streaming:
            it = channel.unary_stream(m.path)(payloads[0], timeout=timeout, metadata=metadata)
        else:
            it = channel.stream_stream(m.path)(iter(payloads), timeout=timeout, metadata=metadata)
        for _ in it:
            pass
        return Answer(grpc.StatusCode.OK, "", "")
    except grpc.RpcError as e:
        md = dict(e.trailing_metadata() or ())
        return Answer(e.code(), md.get("orbitmq-error", ""), e.details() or "")
