"""The clean-shutdown checkpoint's pure core: encoding, decoding, corruption, the trust decision."""

from __future__ import annotations

import dataclasses
import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.broker.store import checkpoint as ck

SEG = 1 << 30


def sample(**kw) -> ck.Checkpoint:
    base = dict(log_end=3 * SEG + 5000, dispatched=3 * SEG + 4000, first_base=SEG, last_base=3 * SEG,
                last_size=SEG, segments=3, last_mtime_ns=1_795_000_000_123_456_789, tail_len=ck.TAIL_BYTES,
                tail_crc=0xDEADBEEF, closed_ms=1_795_000_000_000)
    base.update(kw)
    return ck.Checkpoint(**base)


def observed_for(cp: ck.Checkpoint, **kw) -> ck.Observed:
    base = dict(markers=(), segments=cp.segments, first_base=cp.first_base, last_base=cp.last_base,
                last_size=cp.last_size, last_mtime_ns=cp.last_mtime_ns, index_dispatched=cp.dispatched,
                tail_crc=cp.tail_crc, zero_after_end=True)
    base.update(kw)
    return ck.Observed(**base)


@st.composite
def checkpoints(draw) -> ck.Checkpoint:
    seg = draw(st.integers(4096, 1 << 34))
    first_i = draw(st.integers(0, 1000))
    n = draw(st.integers(1, 3000))
    first_base = first_i * seg
    last_base = first_base + (n - 1) * seg
    end = last_base + draw(st.integers(0, seg))
    return ck.Checkpoint(log_end=end, dispatched=draw(st.integers(0, end)), first_base=first_base,
                         last_base=last_base, last_size=seg, segments=n,
                         last_mtime_ns=draw(st.integers(0, 1 << 63)), tail_len=ck.tail_len_for(end, first_base),
                         tail_crc=draw(st.integers(0, 0xFFFFFFFF)), closed_ms=draw(st.integers(0, 1 << 50)))


def encode_raw(obj: dict) -> bytes:
    """A well-formed file (right CRC) around any JSON object: tests the checks behind the CRC."""
    body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return body + b"\n" + f"{zlib.crc32(body):08x}".encode() + b"\n"


@given(checkpoints())
def test_round_trip(cp: ck.Checkpoint) -> None:
    data = ck.encode(cp)
    assert len(data) <= ck.MAX_FILE_BYTES
    assert ck.decode(data) == cp


@settings(max_examples=300)
@given(checkpoints(), st.data())
def test_any_flipped_byte_is_refused(cp: ck.Checkpoint, data) -> None:
    raw = bytearray(ck.encode(cp))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ck.CheckpointError):
        ck.decode(bytes(raw))


@given(checkpoints(), st.data())
def test_truncated_or_extended_files_are_refused(cp: ck.Checkpoint, data) -> None:
    raw = ck.encode(cp)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(ck.CheckpointError):
        ck.decode(raw[:cut])
    with pytest.raises(ck.CheckpointError):
        ck.decode(raw + data.draw(st.binary(min_size=1, max_size=64)))


@given(st.binary(max_size=600))
def test_random_bytes_are_refused_never_crash(junk: bytes) -> None:
    with pytest.raises(ck.CheckpointError):
        ck.decode(junk)


def test_fields_behind_a_valid_crc_are_still_checked() -> None:
    good = {"format": ck.FORMAT, "version": ck.VERSION, **dataclasses.asdict(sample())}
    assert ck.decode(encode_raw(good)) == sample()
    cases = {
        "not an OrbitMQ": {**good, "format": "something-else"},
        "version 2": {**good, "version": 2},
        "version True": {**good, "version": True},
        "unknown fields": {**good, "extra": 1},
        "'dispatched' missing": {k: v for k, v in good.items() if k != "dispatched"},
        "'log_end' missing or not an integer": {**good, "log_end": "12"},
        "'segments' missing or not an integer": {**good, "segments": True},
        "negative": {**good, "closed_ms": -1},
        "no segments": {**good, "segments": 0},
        "agree with the segment count": {**good, "segments": 1},
        "outside the last segment": {**good, "log_end": 4 * SEG + 1},
        "beyond the log end": {**good, "dispatched": good["log_end"] + 1},
        "tail length": {**good, "tail_len": 4999},
        "tail CRC out of range": {**good, "tail_crc": 1 << 32},
    }
    for why, obj in cases.items():
        with pytest.raises(ck.CheckpointError) as e:
            ck.decode(encode_raw(obj))
        assert why in e.value.reason, (why, e.value.reason)
    with pytest.raises(ck.CheckpointError, match="not JSON"):
        body = b"{not json"
        ck.decode(body + b"\n" + f"{zlib.crc32(body):08x}".encode() + b"\n")
    with pytest.raises(ck.CheckpointError, match="longer"):
        ck.decode(b"x" * (ck.MAX_FILE_BYTES + 1))


def test_encode_refuses_an_inconsistent_checkpoint() -> None:
    with pytest.raises(ck.CheckpointError):
        ck.encode(sample(dispatched=sample().log_end + 1))


def test_tail_length_is_capped_and_never_negative() -> None:
    assert ck.tail_len_for(100, 0) == 100
    assert ck.tail_len_for(SEG, 0) == ck.TAIL_BYTES
    assert ck.tail_len_for(5 * SEG, 5 * SEG) == 0
    assert ck.tail_len_for(5 * SEG, 4 * SEG) == ck.TAIL_BYTES   # an empty last segment: the one before
    assert ck.tail_crc_of([b"ab", b"", b"cd"]) == ck.tail_crc_of([b"abcd"]) == zlib.crc32(b"abcd")


def test_a_matching_directory_is_trusted() -> None:
    cp = sample()
    v = ck.judge(cp, observed_for(cp))
    assert v.trusted and v.reason == "matches the files"


@pytest.mark.parametrize("change, why", [
    (dict(markers=("TRUNCATING",)), "interrupted operation"),
    (dict(markers=("RESTARTING",)), "interrupted operation"),
    (dict(segments=4), "segment files"),
    (dict(segments=0), "segment files"),
    (dict(first_base=2 * SEG), "oldest segment"),
    (dict(last_base=2 * SEG), "last segment starts"),
    (dict(last_size=SEG // 2), "bytes, not"),
    (dict(last_mtime_ns=1), "mtime"),
    (dict(tail_crc=0xDEADBEEE), "differ"),
    (dict(tail_crc=None), "differ"),
    (dict(zero_after_end=False), "written after the recorded end"),
    (dict(index_dispatched=None), "index"),
    (dict(index_dispatched=3 * SEG + 4001), "index"),
])
def test_every_mismatch_refuses_the_checkpoint_with_a_reason(change: dict, why: str) -> None:
    cp = sample()
    v = ck.judge(cp, observed_for(cp, **change))
    assert not v.trusted and why in v.reason


@given(checkpoints(), st.sampled_from(["segments", "first_base", "last_base", "last_size", "last_mtime_ns",
                                       "index_dispatched", "tail_crc"]), st.integers(1, 1 << 20))
def test_any_single_numeric_difference_is_refused(cp: ck.Checkpoint, field: str, delta: int) -> None:
    seen = observed_for(cp)
    seen = dataclasses.replace(seen, **{field: getattr(seen, field) + delta})
    assert not ck.judge(cp, seen).trusted


def test_the_core_imports_nothing_impure() -> None:
    import subprocess
    import sys

    code = ("import sys; before = set(sys.modules); import orbitmq.broker.store.checkpoint; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert not loaded & {"threading", "socket", "asyncio", "time", "mmap", "grpc", "rocksdict",
                         "orbitmq.common.durable", "orbitmq.broker.store.commitlog"}
    assert {m for m in loaded if m.startswith("orbitmq.")} <= {
        "orbitmq.broker", "orbitmq.broker.store", "orbitmq.broker.store.checkpoint", "orbitmq.common",
        "orbitmq.common.lazy_exports"}
