"""The rolling restart's order (chaos/rolling_plan.py), over every master / leader placement and
with them moving during the run: learners, followers, masters, name servers, controllers, the
Raft leader last; every node exactly once."""

from __future__ import annotations

import itertools

from orbitmq.chaos.rolling_plan import KINDS, Node, next_step

NODES = ([Node(f"c{i}", "controller") for i in (1, 2, 3)] + [Node(f"n{i}", "namesrv") for i in (1, 2)]
         + [Node(f"a-{i}", "broker", "a", i == 4) for i in (1, 2, 3, 4)]
         + [Node(f"b-{i}", "broker", "b") for i in (1, 2)])


def test_every_placement_gives_the_safe_order_and_each_node_once() -> None:
    for ma, mb, leader in itertools.product(("a-1", "a-2", "a-3", None), ("b-1", "b-2"), ("c1", "c2", "c3", None)):
        done: set[str] = set()
        kinds = []
        while (s := next_step(NODES, done, {"a": ma, "b": mb}, leader)) is not None:
            assert s.node not in done
            done.add(s.node)
            kinds.append(s.kind)
        assert done == {n.name for n in NODES}
        assert kinds == sorted(kinds, key=KINDS.index)                 # kinds never go back
        assert kinds.count("master") == (ma is not None) + 1
        assert kinds.count("controller_leader") == (leader is not None)
        if leader is not None:
            assert kinds[-1] == "controller_leader"


def test_the_order_follows_the_cluster_as_it_changes() -> None:
    done = {"a-4", "b-2"}                                   # learner and b's follower done
    s = next_step(NODES, done, {"a": "a-1", "b": "b-1"}, "c2")
    assert s.kind == "follower" and s.node == "a-2"
    # the master of a moved to a-2 meanwhile (a handoff): a-1 is a follower now and goes first
    s = next_step(NODES, done | {"a-3"}, {"a": "a-2", "b": "b-1"}, "c2")
    assert (s.node, s.kind) == ("a-1", "follower")
    s = next_step(NODES, done | {"a-1", "a-2", "a-3", "b-1"}, {"a": "a-2", "b": "b-1"}, "c2")
    assert (s.node, s.kind) == ("n1", "namesrv")
    # the leader moved to c1 after c1... c1 restarted already: c3 next, c2 no longer leader
    s = next_step(NODES, {n.name for n in NODES} - {"c2", "c3"}, {"a": "a-2", "b": "b-1"}, "c3")
    assert (s.node, s.kind) == ("c2", "controller")
    assert next_step(NODES, {n.name for n in NODES}, {}, None) is None
