"""The pure membership rules (controller/membership.py) and the client's adoption of a member list."""

from __future__ import annotations

import asyncio

from orbitmq.controller import membership as mb
from orbitmq.controller import state as st
from orbitmq.controller.client import ControllerClient
from orbitmq.controller.refusals import Refusal

NODES = {"r1": "g1", "r2": "g2", "r3": "g3"}


def test_controller_list_is_complete_or_empty():
    assert mb.controller_list(["r2", "r1", "r3"], NODES) == ["g1", "g2", "g3"]
    assert mb.controller_list(["r1", "r4"], NODES) == []       # r4 not announced yet: no partial list
    assert mb.controller_list([], NODES) == []


def test_resolve_member_by_raft_or_grpc_address():
    assert mb.resolve_member("r2", ["r1", "r2"], NODES) == "r2"
    assert mb.resolve_member("g2", ["r1", "r2"], NODES) == "r2"
    assert mb.resolve_member("g3", ["r1", "r2"], NODES) is None     # announced once, not a member now
    assert mb.resolve_member("zz", ["r1", "r2"], NODES) is None


def test_add_and_remove_refusals():
    assert mb.check_add("r4", "g4", ["r1", "r2", "r3"], NODES) is None
    assert mb.check_add("r2", "g4", ["r1", "r2"], NODES)[0] == Refusal.NODE_ALREADY_MEMBER
    assert mb.check_add("r4", "g1", ["r1", "r2"], NODES)[0] == Refusal.NODE_ALREADY_MEMBER
    assert mb.check_add("", "g4", ["r1"], NODES)[0] == Refusal.BAD_REQUEST
    assert mb.check_remove(None, "g9", ["r1", "r2"])[0] == Refusal.NODE_NOT_MEMBER
    assert mb.check_remove("r1", "g1", ["r1"])[0] == Refusal.MEMBERSHIP_CHANGE_FAILED
    assert mb.check_remove("r1", "g1", ["r1", "r2"]) is None


def test_join_done_needs_a_leader_and_its_commit_applied():
    assert not mb.join_done(False, 10, 10)
    assert not mb.join_done(True, 10, None)
    assert not mb.join_done(True, 9, 10)
    assert not mb.join_done(True, 0, 0)
    assert mb.join_done(True, 10, 10) and mb.join_done(True, 11, 10)


def test_retire_and_announce_in_the_state():
    s = st.ControllerState()
    assert s.apply(st.AnnounceNode("r1", "g1")).ok
    assert s.apply(st.RetireNode("r1")).ok
    assert "r1" not in s.nodes and "r1" in s.retired_nodes
    assert s.apply(st.AnnounceNode("r1", "g1b")).ok          # added again: no longer retired
    assert s.nodes["r1"] == "g1b" and "r1" not in s.retired_nodes
    assert not s.apply(st.RetireNode("")).ok
    old = st.ControllerState()
    del old.__dict__["retired_nodes"]                        # a snapshot from before membership changes
    import pickle
    assert pickle.loads(pickle.dumps(old)).retired_nodes == set()


def test_client_learns_a_member_list():
    async def go():
        c = ControllerClient(["a:1", "b:2", "c:3"])
        c.leader = "b:2"
        assert not c.learn([])                       # "unknown": kept
        assert not c.learn(["c:3", "a:1", "b:2"])    # same set
        assert c.learn(["b:2", "c:3", "d:4"])
        assert c.addresses == ["b:2", "c:3", "d:4"] and c.leader == "b:2"
        assert c.learn(["d:4"])
        assert c.leader == "d:4"
        await c.close()
    asyncio.run(go())


def test_a_lone_node_with_a_random_raft_secret_cannot_take_members(tmp_path):
    from orbitmq.controller.config import ControllerConfig

    secret = tmp_path / "raft.secret"
    secret.write_text("x" * 32)
    assert ControllerConfig().random_raft_secret(env={})
    assert not ControllerConfig().random_raft_secret(env={"ORBITMQ_RAFT_SECRET": "y" * 32})
    assert not ControllerConfig(raft_secret_file=str(secret)).random_raft_secret(env={})
    assert not ControllerConfig(peers=["127.0.0.1:1"], insecure_raft=True).random_raft_secret(env={})
