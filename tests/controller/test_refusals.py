"""One error vocabulary: wire codes and controller refusal codes are enums that match the protos,
every refusal the state machine or the election gives is one of them, clients map every wire code."""

from __future__ import annotations

import grpc
from hypothesis import given, settings
from hypothesis import strategies as hs

from orbitmq.client.errors import BY_CODE
from orbitmq.common.error_codes import ErrorCode
from orbitmq.common.grpc_errors import STATUS_OF
from orbitmq.controller import election as el
from orbitmq.controller import state as st
from orbitmq.controller.refusals import Refusal
from orbitmq.protos import common_pb2
from orbitmq.protos import controller_pb2 as pb


def test_enums_match_the_protos():
    assert {c.value for c in ErrorCode} == set(common_pb2.ErrorCode.keys()) - {"ERROR_UNSPECIFIED"}
    assert {r.value for r in Refusal} == set(pb.CtlResult.Code.keys()) - {"CODE_UNSPECIFIED"}
    assert set(STATUS_OF) == set(ErrorCode) and all(isinstance(s, grpc.StatusCode) for s in STATUS_OF.values())


def test_clients_map_every_wire_code():
    assert set(BY_CODE) == {c.value for c in ErrorCode}


cmds = hs.one_of(
    hs.builds(st.ApplyBrokerId, hs.sampled_from(["c", ""]), hs.just("s"), hs.integers(-1, 3), hs.sampled_from(["", "k"])),
    hs.builds(st.RegisterBroker, hs.just("c"), hs.sampled_from(["s", "t"]), hs.integers(0, 3), hs.sampled_from(["", "a"]),
              hs.just(""), hs.booleans(), hs.sampled_from(["", "k", "x"])),
    hs.builds(st.AlterSyncStateSet, hs.just("c"), hs.sampled_from(["s", "t"]), hs.integers(0, 3), hs.integers(0, 2),
              hs.frozensets(hs.integers(0, 3), max_size=3), hs.integers(0, 2)),
    hs.builds(st.ElectMaster, hs.just("c"), hs.sampled_from(["s", "t"]), hs.integers(0, 2), hs.integers(0, 3),
              hs.frozensets(hs.integers(0, 3), max_size=3), hs.booleans(), hs.just("r"), hs.just(1)),
    hs.builds(st.CleanBrokerData, hs.just("c"), hs.sampled_from(["s", "t"]), hs.frozensets(hs.integers(0, 3), max_size=2)),
    hs.builds(st.AnnounceNode, hs.sampled_from(["", "r"]), hs.sampled_from(["", "a"])),
    hs.builds(st.RetireNode, hs.sampled_from(["", "r"])),
)


@given(hs.lists(cmds, max_size=30), hs.dictionaries(hs.integers(1, 3), hs.builds(el.Live), max_size=3),
       hs.integers(0, 3), hs.booleans())
@settings(max_examples=200, deadline=None)
def test_every_refusal_is_a_listed_code(commands, alive, preferred, designate):
    s = st.ControllerState()
    for c in commands:
        r = s.apply(c)
        assert r.ok or r.code in set(Refusal), r
    for bs in list(s.sets.values()):
        d = el.elect(bs, alive, preferred=preferred, designate=designate)
        assert d.code == "" or d.code in set(Refusal), d
