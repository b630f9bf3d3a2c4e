"""batch_columns (a batch of Messages checked and split into columns) and BatchReceipts (receipts
made on access): pure, no broker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbitmq.broker.store import batch_record as br
from orbitmq.client.batch_columns import batch_columns, compact_ids
from orbitmq.client.message import BatchReceipts, Message, MsgIdGenerator, SendReceipt
from orbitmq.client.routes import MessageQueue


def cols(msgs: list, gen: MsgIdGenerator | None = None):
    gen = gen or MsgIdGenerator()
    return batch_columns(msgs, gen.reserve_range, gen.next)


def test_plain_batch_gets_one_compact_id_range_written_back() -> None:
    gen = MsgIdGenerator()
    gen.next()  # the range does not start at 0
    msgs = [Message("T", b"a"), Message("T", bytearray(b"b")), Message("T", memoryview(b"c"))]
    c = cols(msgs, gen)
    assert c.compact and c.id_prefix == gen.prefix and c.id_first == 1
    assert c.ids == [f"{gen.prefix}{i:012X}" for i in (1, 2, 3)] == [m.msg_id for m in msgs]
    assert c.bodies == [b"a", b"b", b"c"] and all(type(b) is bytes for b in c.bodies)
    assert c.tags is None and c.keys is None and c.properties is None
    # a re-send of the same objects keeps their ids (the broker deduplicates by them)
    again = cols(msgs, gen)
    assert not again.compact and again.ids == c.ids and gen.next().endswith("000000000004")


def test_messages_with_some_ids_keep_theirs_and_the_rest_get_new_ones() -> None:
    msgs = [Message("T", b"a", msg_id="MINE"), Message("T", b"b")]
    c = cols(msgs)
    assert not c.compact and c.ids[0] == "MINE" and c.ids[1] == msgs[1].msg_id != ""


def test_tags_keys_properties_columns_only_when_some_message_has_them() -> None:
    msgs = [Message("T", b"a", tags="red", keys="k1"), Message("T", b"b", properties={"p": "v"})]
    c = cols(msgs)
    assert c.tags == ["red", ""] and c.keys == [["k1"], []] and c.properties == [{}, {"p": "v"}]
    assert msgs[0].keys == ["k1"]  # a single key given as str becomes a list, as Message.check does


@pytest.mark.parametrize(("msgs", "err", "words"), [
    ([], ValueError, "at least one"),
    ([Message("T", b"a"), Message("U", b"b")], ValueError, "same topic"),
    ([Message("T", b"a"), "not a message"], TypeError, "expected orbitmq.client.Message"),
    ([Message(7, b"a")], TypeError, "topic must be str"),  # type: ignore[arg-type]
    ([Message("T", b"a"), Message("T", "text")], TypeError, "body must be bytes"),  # type: ignore[arg-type]
    ([Message("T", b"a", tags=None)], TypeError, "tags must be str"),  # type: ignore[arg-type]
])
def test_bad_batches_are_refused_before_any_id_is_given(msgs: list, err: type, words: str) -> None:
    gen = MsgIdGenerator()
    with pytest.raises(err, match=words):
        cols(msgs, gen)
    assert gen.reserve(1) == 0
    assert all(not getattr(m, "msg_id", "") for m in msgs)


@given(st.lists(st.tuples(st.binary(max_size=20), st.sampled_from(["", "a", "b"]),
                          st.lists(st.sampled_from(["k", "j"]), max_size=2),
                          st.booleans()), min_size=1, max_size=30))
def test_columns_encode_into_a_record_that_decodes_to_the_same_messages(spec: list) -> None:
    msgs = [Message("T", body, tags=tag, keys=list(keys), msg_id=f"ID{i}" if own else "")
            for i, (body, tag, keys, own) in enumerate(spec)]
    c = cols(msgs)
    data = br.encode(c.topic, c.bodies, tags=c.tags, keys=c.keys, properties=c.properties,
                     msg_ids=None if c.compact else c.ids, id_prefix=c.id_prefix, id_first=c.id_first,
                     born_host="h")
    view = br.parse(data, 0)
    got = [view.message(i) for i in range(view.count)]
    assert [g.body for g in got] == [m.body for m in msgs]
    assert [g.tags for g in got] == [m.tags for m in msgs]
    assert [list(g.keys) for g in got] == [m.keys for m in msgs]
    assert [g.msg_id for g in got] == [m.msg_id for m in msgs] == c.ids


def test_batch_receipts_are_a_sequence_of_send_receipts() -> None:
    q = MessageQueue("T", "set-a", 3)
    r = BatchReceipts(["i0", "i1", "i2"], q, 10, 4096, 2, "127.0.0.1:1")
    want = [SendReceipt(f"i{k}", q, 10 + k, 4096, 2, "127.0.0.1:1") for k in range(3)]
    assert len(r) == 3 and list(r) == want and r == want and r[-1] == want[2] and r[1:] == want[1:]
    assert [x.queue_offset for x in r] == [10, 11, 12] and r[0].broker_set == "set-a"
    assert r != want[:2] and r != "abc"
    with pytest.raises(IndexError):
        r[3]
    with pytest.raises(TypeError):
        hash(r)
    assert "10..12" in repr(r)


@given(st.integers(0, (1 << 48) - 5000), st.integers(1, 4000))
def test_compact_ids_are_the_record_formats_ids(first: int, n: int) -> None:
    assert compact_ids("PFX", first, n) == [br.format_id("PFX", c) for c in range(first, first + n)]


def test_subclasses_of_str_and_bytes_pass_as_message_check_lets_them() -> None:
    class Tag(str):
        pass

    class Body(bytes):
        pass

    c = cols([Message("T", Body(b"a"), tags=Tag("red")), Message("T", b"b")])
    assert c.tags == ["red", ""] and c.bodies == [b"a", b"b"] and type(c.bodies[0]) is bytes
