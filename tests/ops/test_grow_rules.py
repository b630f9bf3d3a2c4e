"""Pure rules of growing a topic: the admin's plan (client/topic_plan.py) and the broker's check
(broker/topic_rules.py)."""

from __future__ import annotations

import pytest

from orbitmq.broker.topic_rules import queue_change_refusal
from orbitmq.client.topic_plan import TopicPlanError, TopicSpec, plan_update
from orbitmq.protos import common_pb2

A = {"a": TopicSpec(4, 4, 6, False)}


def test_extend_to_a_new_set_copies_the_current_counts():
    assert plan_update("t", A, ["a", "b"]) == {"a": TopicSpec(4, 4, 6, False), "b": TopicSpec(4, 4, 6, False)}
    # naming only the new set leaves the others alone
    assert plan_update("t", A, ["b"]) == {"b": TopicSpec(4, 4, 6, False)}


def test_raise_counts_everywhere_it_is():
    two = {"a": TopicSpec(4, 4), "b": TopicSpec(2, 2)}
    assert plan_update("t", two, [], queues=8) == {"a": TopicSpec(8, 8), "b": TopicSpec(8, 8)}
    assert plan_update("t", two, [], write_queues=6, read_queues=6) == {"a": TopicSpec(6, 6), "b": TopicSpec(6, 6)}
    assert plan_update("t", two, ["c"]) == {"c": TopicSpec(4, 4)}     # the largest counts as the template


def test_lowering_is_refused_naming_what():
    with pytest.raises(TopicPlanError, match=r"only grow.*a read_queues 4 -> 2"):
        plan_update("t", A, [], queues=2)
    with pytest.raises(TopicPlanError, match="write_queues 4 -> 3"):
        plan_update("t", A, [], write_queues=3)


def test_unknown_topic_needs_counts():
    with pytest.raises(TopicPlanError, match="does not exist"):
        plan_update("t", {}, ["a"])
    assert plan_update("t", {}, ["a"], queues=3) == {"a": TopicSpec(3, 3)}
    with pytest.raises(TopicPlanError, match="no broker set"):
        plan_update("t", {}, [])


def test_broker_refuses_a_decrease_and_allows_growth():
    old = common_pb2.TopicConfig(topic="t", read_queues=4, write_queues=4)
    assert queue_change_refusal(None, old) is None
    assert queue_change_refusal(old, common_pb2.TopicConfig(topic="t", read_queues=8, write_queues=4)) is None
    why = queue_change_refusal(old, common_pb2.TopicConfig(topic="t", read_queues=2, write_queues=4))
    assert why is not None and "read_queues 4 -> 2" in why and "only grow" in why
