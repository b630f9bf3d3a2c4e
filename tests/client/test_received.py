"""Received messages made when read (client/received.py, client/batch_messages.py): every operation
of `Messages` over pull answers of real batch records agrees with the same operation on the plain
list of messages the consumer used to build, for any slice, index, offset and tag filter."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.broker.store import batch_record as br
from orbitmq.client.batch_messages import BatchMessage, MessageRun, messages_of
from orbitmq.client.consumer_base import offsets_of
from orbitmq.client.received import Messages

TAGS = ["a", "b", ""]


@dataclass
class Resp:                      # the fields of a PullResponse that messages_of reads
    batches: list[bytes]
    messages: list
    next_offset: int


@dataclass
class Old:                       # a one-message record's message (only what the consumer reads)
    queue_offset: int
    body: bytes


def record(base: int, tags: list[str]) -> bytes:
    bodies = [f"m{base + i}".encode() for i in range(len(tags))]
    return br.encode("T", bodies, tags=tags, id_prefix="AB" * 8, id_first=base, base_queue_offset=base, queue_id=3)


# a pull answer: consecutive batch records from some base offset, each with its messages' tags
answers = st.tuples(st.integers(0, 1000),
                    st.lists(st.lists(st.sampled_from(TAGS), min_size=1, max_size=12), min_size=1, max_size=5))


def build(base: int, batches: list[list[str]]) -> tuple[list[bytes], list[tuple[int, str]]]:
    raws, every = [], []
    at = base
    for tags in batches:
        raws.append(record(at, tags))
        every += [(at + i, t) for i, t in enumerate(tags)]
        at += len(tags)
    return raws, every


def key(msgs) -> list[tuple[int, bytes]]:
    return [(m.queue_offset, m.body) for m in msgs]


@given(answers, st.integers(0, 60), st.integers(0, 60), st.sampled_from([None, {"a"}, {"a", "b"}, {"zzz"}]))
@settings(max_examples=300, deadline=None)
def test_messages_of_picks_what_the_eager_decoder_did(ans, skip, cut, tags):
    base, batches = ans
    raws, every = build(base, batches)
    end = base + len(every)
    start, hi = base + min(skip, len(every)), max(base, end - cut)
    msgs = Messages(messages_of(Resp(raws, [], hi), start, tags, "bs"))
    want = [(o, f"m{o}".encode()) for o, t in every if start <= o < hi and (tags is None or (t and t in tags))]
    assert key(msgs) == want
    assert len(msgs) == len(want) and bool(msgs) == bool(want)
    assert list(msgs.offsets()) == [o for o, _ in want]
    if want and want[-1][0] - want[0][0] == len(want) - 1:
        assert isinstance(msgs.offsets(), range)   # the tracker takes a range in O(1)
    for m, (o, _) in zip(msgs, want, strict=True):
        assert m.tags == dict(every)[o] and m.queue_id == 3 and m.msg_id == br.format_id("AB" * 8, o)
        assert m.broker_set == "bs" and m.topic == "T"


@given(answers, st.integers(-30, 30), st.integers(-30, 30), st.sampled_from([None, 1, 2, 3, -1]), st.integers(-40, 40))
@settings(max_examples=300, deadline=None)
def test_slices_indexes_and_offsets_match_a_list(ans, a, b, step, k):
    base, batches = ans
    raws, _ = build(base, batches)
    # one-message records first, then batch records, as messages_of lays out a pull of one format
    old = [Old(o, f"m{o}".encode()) for o in range(base - 3, base)] if base >= 3 else []
    parts = ([old] if old else []) + messages_of(Resp(raws, [], 10 ** 9), 0, None, "bs")
    msgs = Messages(parts)
    plain = list(msgs)
    assert msgs == plain and msgs != plain[:-1]
    assert key(msgs[a:b:step]) == key(plain[a:b:step])
    assert isinstance(msgs[a:b], Messages)
    if -len(plain) <= k < len(plain):
        assert key([msgs[k]]) == key([plain[k]])
    else:
        with pytest.raises(IndexError):
            msgs[k]
    sub = msgs[a:b]
    assert list(sub.offsets()) == [m.queue_offset for m in plain[a:b]]
    assert list(sub.offsets()) == list(offsets_of(list(sub)))
    for o in (base - 5, base, base + 3, base + 7, base + 10 ** 6):
        assert key(msgs.from_offset(o)) == key([m for m in plain if m.queue_offset >= o])
    if sub:
        assert sub.first_offset == plain[a:b][0].queue_offset


@given(answers, st.lists(st.integers(0, 80), max_size=6))
@settings(max_examples=200, deadline=None)
def test_cut_and_joined_again_is_the_same(ans, cuts):
    """What poll does: take up to `room` messages, carry the rest, and join what it took."""
    base, batches = ans
    raws, _ = build(base, batches)
    msgs = Messages(messages_of(Resp(raws, [], 10 ** 9), 0, None, "bs"))
    taken, rest = [], msgs
    for room in cuts:
        taken.append(rest[:room])
        rest = rest[room:]
    taken.append(rest)
    joined = Messages.join(taken)
    assert key(joined) == key(msgs) and len(joined) == len(msgs)
    assert joined.offsets() == msgs.offsets()


def test_a_pull_makes_no_message_until_one_is_read():
    raws, _ = build(100, [["a"] * 500, ["b"] * 500])
    gc.collect()
    before = sum(1 for o in gc.get_objects() if type(o) is BatchMessage)
    msgs = Messages(messages_of(Resp(raws, [], 10 ** 9), 0, None, "bs"))
    assert len(msgs) == 1000 and msgs.offsets() == range(100, 1100)
    assert sum(1 for o in gc.get_objects() if type(o) is BatchMessage) == before
    assert all(type(p) is MessageRun for p in msgs._parts)
    n = sum(len(m.body) for m in msgs)      # read one at a time, each dropped after
    assert n == sum(len(f"m{o}") for o in range(100, 1100))
    assert sum(1 for o in gc.get_objects() if type(o) is BatchMessage) == before


def test_both_formats_in_one_answer_come_in_queue_order():
    raws = [record(10, ["a", "a"]), record(14, ["b"])]
    old = [Old(12, b"m12"), Old(13, b"m13"), Old(15, b"m15")]
    msgs = Messages(messages_of(Resp(raws, old, 10 ** 9), 0, None, "bs"))
    assert [m.queue_offset for m in msgs] == [10, 11, 12, 13, 14, 15]
    assert msgs.offsets() == range(10, 16)


def test_offsets_of_a_poll_over_several_queues_are_each_messages_own():
    """A poll joins pulls of several queues: its offsets are listed as they are, never taken for a
    range because the first and last happen to span as many numbers as there are messages."""
    a = Messages(messages_of(Resp([record(0, ["a"]), record(5, ["a"])], [], 10 ** 9), 0, None, "bs"))
    b = Messages(messages_of(Resp([record(1, ["a"]), record(3, ["a"])], [], 10 ** 9), 0, None, "bs"))
    joined = Messages.join([a, b])     # 0 .. 3, four messages: a range would say 0, 1, 2, 3
    assert list(joined.offsets()) == [0, 5, 1, 3] == [m.queue_offset for m in joined]
    c = Messages(messages_of(Resp([record(1, ["a", "a"]), record(3, ["a"])], [], 10 ** 9), 0, None, "bs"))
    assert c.offsets() == range(1, 4)
