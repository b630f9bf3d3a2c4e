"""The batch record codec (pure): round trips, stamping, and every damaged byte detected."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbitmq.broker.store import batch_record as br
from orbitmq.broker.store import record as rc

# no whitespace: keys are stored space-separated (as in one-message records) and read back with split()
_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="|*")
                | st.sampled_from("éß中"), min_size=1, max_size=12)
_msg = st.tuples(st.binary(min_size=1, max_size=64), st.one_of(st.just(""), _text),
                 st.lists(_text, max_size=3),
                 st.dictionaries(st.text(alphabet="abcxyz_", min_size=1, max_size=6), _text, max_size=2))


@st.composite
def batches(draw):
    msgs = draw(st.lists(_msg, min_size=1, max_size=12))
    explicit = draw(st.booleans())
    kw = {}
    if explicit:
        kw["msg_ids"] = [f"id-{i}-{draw(_text)}" for i in range(len(msgs))]
    else:
        kw["id_prefix"] = draw(st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=16))
        kw["id_first"] = draw(st.integers(0, 2**40))
    return msgs, kw


def _encode(msgs, kw, **extra) -> bytes:
    return br.encode("Topic_1", [m[0] for m in msgs], tags=[m[1] for m in msgs], keys=[m[2] for m in msgs],
                     properties=[m[3] for m in msgs], born_ts=1234, born_host="10.0.0.1:5", **kw, **extra)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.integers(0, 1000), st.integers(0, 2**40), st.integers(-1, 2**31 - 1))
def test_round_trip_and_stamp(b, base, phys, qid) -> None:
    msgs, kw = b
    data = _encode(msgs, kw)
    v = br.parse(data)
    assert v.count == len(msgs) and v.total == len(data) and v.topic == "Topic_1"
    meta = bytearray(data[:v.meta_len])
    br.restamp(meta, qid, base, phys, 99)
    stored = bytes(meta) + data[v.meta_len:]
    assert rc.check(stored, 0, len(stored), expect_offset=phys) == (len(stored), rc.MAGIC_BATCH)
    s = br.parse(stored)
    for i, (body, tag, keys, props) in enumerate(msgs):
        m = s.message(i)
        assert (m.body, m.tags, m.keys, m.properties) == (body, tag, keys, props)
        assert m.queue_offset == base + i and m.queue_id == qid and m.physical_offset == phys
        assert m.born_timestamp == 1234 and m.store_timestamp == 99 and m.born_host == "10.0.0.1:5"
        want_id = kw["msg_ids"][i] if "msg_ids" in kw else br.format_id(kw["id_prefix"], kw["id_first"] + i)
        assert m.msg_id == want_id and s.index_of_id(want_id) == i
    assert s.msg_ids() == [s.message(i).msg_id for i in range(s.count)]
    assert set(s.keys) == {k for m in msgs for k in m[2]}
    tags = {m[1] for m in msgs}
    assert s.uniform_tag() == (tags.pop() if len(tags) == 1 else None)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_every_flipped_byte_is_detected(b) -> None:
    msgs, kw = b
    data = _encode(msgs, kw)
    for pos in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[pos] ^= flip
            with pytest.raises(rc.CodecError):
                rc.check(bytes(bad), 0, len(bad))
                br.parse(bytes(bad))  # a size change must not pass the structural checks either


def test_truncated_batch_is_refused() -> None:
    data = br.encode("T", [b"a" * 100, b"b"], id_prefix="P", id_first=0)
    for n in (0, 11, br.HEADER_SIZE - 1, br.HEADER_SIZE, len(data) - 1):
        with pytest.raises(rc.CodecError):
            br.parse(data[:n])


def test_lying_columns_are_refused_even_with_good_crcs() -> None:
    """A producer cannot get a structurally wrong batch past parse by computing valid CRCs."""
    data = br.encode("T", [b"aa", b"bb"], id_prefix="P", id_first=0)
    v = br.parse(data)
    meta = bytearray(data[:v.meta_len])
    # body_len[0] += 1 (columns end at meta_len: body_len is the last 4*count bytes)
    at = v.meta_len - 8
    meta[at] += 1
    br.restamp(meta, 0, 0, 0, 0)
    with pytest.raises(rc.CodecError, match="columns sum"):
        br.parse(bytes(meta) + data[v.meta_len:])


def test_encode_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        br.encode("T", [], id_prefix="P")
    with pytest.raises(ValueError):
        br.encode("T", [b"x"])  # no ids
    with pytest.raises(ValueError):
        br.encode("T", [b"x", b"y"], tags=["a"], id_prefix="P")
    with pytest.raises(ValueError):
        br.encode("T", [b"x"], msg_ids=[""])


def test_compact_ids() -> None:
    assert br.split_id("ABC00000000002A") == ("ABC", 42)
    assert br.split_id("00000000002A") is None  # no prefix
    assert br.split_id("ABCxyz00000000002") is None
    assert br.split_id("ABC00000000002a") is None  # not the canonical upper-case form
    assert br.format_id("P", 255) == "P0000000000FF"


@given(st.lists(st.integers(0, 0xFFFF), max_size=60), st.integers(0, 300))
def test_u16_at_most_is_max_at_most(values, k) -> None:
    raw = b"".join(v.to_bytes(2, "little") for v in values)
    assert br.u16_at_most(raw, k) == (max(values, default=0) <= k)


@given(st.lists(st.sampled_from([0, 1, 255, 256, 65536, 1 << 24, 0xFFFFFFFF, 1024, 0x01000100]), max_size=40)
       | st.lists(st.integers(0, 0xFFFFFFFF), max_size=40))
def test_has_zero_u32_finds_only_aligned_zeros(values) -> None:
    for order in ("little", "big"):
        raw = b"".join(v.to_bytes(4, order) for v in values)
        assert br.has_zero_u32(raw) == (0 in values)


def test_uniform_tag_and_empty_bodies() -> None:
    one = br.parse(br.encode("T", [b"a", b"b"], tags=["x", "x"], id_prefix="P", id_first=0))
    assert one.uniform_tag() == "x" and not one.has_empty_body()
    mixed = br.parse(br.encode("T", [b"a", b"b"], tags=["x", ""], id_prefix="P", id_first=0))
    assert mixed.uniform_tag() is None
    assert br.parse(br.encode("T", [b"a"], id_prefix="P", id_first=0)).uniform_tag() == ""


@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=30), st.booleans(), st.data())
def test_bodies_with_and_without_properties(bodies, with_keys, data) -> None:
    keys = [[f"k{i}"] for i in range(len(bodies))] if with_keys else None
    v = br.parse(br.encode("T", bodies, keys=keys, id_prefix="P", id_first=0))
    assert (v.props_bytes > 0) == with_keys
    a = data.draw(st.integers(0, len(bodies)))
    b = data.draw(st.integers(a, len(bodies)))
    assert v.bodies(a, b) == bodies[a:b]
    assert [v.body(i) for i in range(len(bodies))] == bodies
    if with_keys:
        assert all(v.props(i) for i in range(len(bodies)))
