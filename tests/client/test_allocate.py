"""Queue allocation among group members: a partition, balanced, contiguous, order-independent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orbitmq.client.allocate import allocate_averagely
from orbitmq.client.routes import MessageQueue

members_st = st.lists(st.text("abcdef0123", min_size=1, max_size=6), min_size=1, max_size=12, unique=True)
queues_st = st.lists(st.tuples(st.sampled_from(["bs-a", "bs-b", "bs-c"]), st.integers(0, 40)), max_size=60,
                     unique=True).map(lambda qs: [MessageQueue("T", b, i) for b, i in qs])


@given(members_st, queues_st)
def test_every_queue_owned_by_exactly_one_member(members, queues):
    owned = [allocate_averagely(m, members, queues) for m in members]
    flat = [q for part in owned for q in part]
    assert sorted(flat) == sorted(queues)
    assert len(flat) == len(set(flat))


@given(members_st, queues_st)
def test_balanced_within_one(members, queues):
    sizes = [len(allocate_averagely(m, members, queues)) for m in members]
    assert max(sizes) - min(sizes) <= 1


@given(members_st, queues_st, st.randoms())
def test_input_order_does_not_matter(members, queues, rnd):
    shuffled_m, shuffled_q = members[:], queues[:]
    rnd.shuffle(shuffled_m)
    rnd.shuffle(shuffled_q)
    for m in members:
        assert allocate_averagely(m, members, queues) == allocate_averagely(m, shuffled_m, shuffled_q)


def test_rocketmq_average_examples():
    qs = [MessageQueue("T", "a", i) for i in range(8)]
    ms = ["c1", "c2", "c3"]
    assert [q.queue_id for q in allocate_averagely("c1", ms, qs)] == [0, 1, 2]
    assert [q.queue_id for q in allocate_averagely("c2", ms, qs)] == [3, 4, 5]
    assert [q.queue_id for q in allocate_averagely("c3", ms, qs)] == [6, 7]
    assert allocate_averagely("c5", ["c1", "c2", "c3", "c4", "c5"], qs[:3]) == []
    assert allocate_averagely("c3", ["c1", "c2", "c3", "c4", "c5"], qs[:3]) == [qs[2]]


def test_unknown_member_gets_nothing():
    assert allocate_averagely("x", ["a", "b"], [MessageQueue("T", "a", 0)]) == []
