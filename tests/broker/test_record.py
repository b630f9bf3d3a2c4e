"""The record codec: round trips and detection of every single corrupted byte (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.broker.store import record as rc

_name = st.text(alphabet="abcXYZ019_-%", min_size=1, max_size=40)
_text = st.text(alphabet=st.characters(blacklist_characters="\x00\x01\x02", blacklist_categories=("Cs",)),
                max_size=30)


@st.composite
def messages(draw) -> rc.Message:
    props = draw(st.dictionaries(_name.filter(lambda k: k not in rc.RESERVED_PROPS), _text, max_size=4))
    return rc.Message(
        topic=draw(_name), body=draw(st.binary(max_size=300)), queue_id=draw(st.integers(0, 1023)),
        tags=draw(st.one_of(st.just(""), _name)), keys=draw(st.lists(_name, max_size=3)), properties=props,
        msg_id=draw(st.one_of(st.just(""), _name)), flag=draw(st.integers(0, 2**32 - 1)),
        sys_flag=draw(st.sampled_from([rc.TX_NOT_TYPE, rc.TX_PREPARED, rc.TX_COMMIT, rc.TX_ROLLBACK])),
        born_timestamp=draw(st.integers(0, 2**62)), born_host=draw(st.sampled_from(["", "127.0.0.1:5555"])),
        store_host="127.0.0.1:10911", store_timestamp=draw(st.integers(0, 2**62)),
        reconsume_times=draw(st.integers(0, 16)), prepared_tx_offset=draw(st.integers(0, 2**40)),
        queue_offset=draw(st.integers(0, 2**40)), magic=draw(st.sampled_from([rc.MAGIC_MESSAGE, rc.MAGIC_META])))


@given(messages(), st.integers(0, 2**40))
@settings(max_examples=300)
def test_round_trip(msg: rc.Message, phys: int) -> None:
    data = rc.encode(msg, phys)
    total, magic = rc.check(data, 0, len(data), expect_offset=phys)
    assert total == len(data) and magic == msg.magic
    out = rc.decode(data)
    assert out.physical_offset == phys and out.size == len(data)
    for f in ("topic", "body", "queue_id", "tags", "keys", "properties", "msg_id", "flag", "sys_flag",
              "born_timestamp", "born_host", "store_host", "store_timestamp", "reconsume_times",
              "prepared_tx_offset", "queue_offset", "magic"):
        assert getattr(out, f) == getattr(msg, f), f


@given(messages(), st.data())
@settings(max_examples=300)
def test_any_single_corrupted_byte_is_detected(msg: rc.Message, data) -> None:
    rec = bytearray(rc.encode(msg, 4096))
    i = data.draw(st.integers(0, len(rec) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    rec[i] ^= flip
    with pytest.raises(rc.CodecError):
        rc.check(rec, 0, len(rec), expect_offset=4096)
    with pytest.raises(rc.CodecError):
        rc.decode(rec)


def test_every_position_of_one_record_exhaustively() -> None:
    msg = rc.Message("TopicA", b"hello world" * 3, queue_id=3, tags="tagA", keys=["k1", "k2"],
                     properties={"p": "v"}, msg_id="ID1", born_host="127.0.0.1:1")
    rec = rc.encode(msg, 123)
    for i in range(len(rec)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(rec)
            bad[i] ^= flip
            with pytest.raises(rc.CodecError):
                rc.check(bad, 0, len(bad), expect_offset=123)


def test_wrong_position_and_truncation_are_detected() -> None:
    rec = rc.encode(rc.Message("T", b"x"), 100)
    with pytest.raises(rc.CodecError, match="physical offset"):
        rc.check(rec, 0, len(rec), expect_offset=101)
    with pytest.raises(rc.CodecError, match="past the end"):
        rc.check(rec[:-1], 0, len(rec) - 1)
    with pytest.raises(rc.CodecError, match="zero size"):
        rc.check(bytes(64), 0, 64)


def test_blank_record() -> None:
    b = rc.encode_blank(100)
    assert rc.check(b, 0, 100) == (100, rc.MAGIC_BLANK)
    bad = bytearray(b)
    bad[50] = 1
    with pytest.raises(rc.CodecError):
        rc.check(bad, 0, 100)
    with pytest.raises(rc.CodecError, match="blank"):
        rc.decode(b)


def test_reserved_and_bad_properties_are_refused() -> None:
    with pytest.raises(rc.BadMessage, match="reserved"):
        rc.encode_properties("", [], "", {"TAGS": "x"})
    with pytest.raises(rc.BadMessage, match="separator"):
        rc.encode_properties("", [], "", {"a": "b\x01c"})
