"""Leader following in the controller client (which address to try next) and error mapping."""

from __future__ import annotations

import grpc

from orbitmq.controller.client import (
    CommitTimeout,
    ControllerClient,
    ControllerError,
    NoLeader,
    NotLeader,
    map_error,
)


class _Err(grpc.RpcError):
    """A stand-in gRPC error carrying status and trailing metadata (map_error is pure)."""

    def __init__(self, code, details, md=()):
        self._code, self._details, self._md = code, details, md

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._md

    def initial_metadata(self):
        return ()


def test_follows_the_named_leader_but_not_one_that_just_failed():
    c = ControllerClient(["a:1", "b:1", "c:1"])
    assert c.leader == "a:1"
    c._rotate("a:1", hint="b:1")
    assert c.leader == "b:1"
    c._rotate("b:1", failed_hard=True)        # b is down
    assert c.leader == "c:1"
    c._rotate("c:1", hint="b:1")              # c still names the dead b: skip it
    assert c.leader == "a:1"
    c._rotate("a:1", failed_hard=True)
    assert c.leader == "c:1"                  # b is still distrusted
    c._bad.clear()
    c._rotate("c:1", hint="b:1")
    assert c.leader == "b:1"


def test_all_down_still_rotates():
    c = ControllerClient(["a:1", "b:1"])
    c._rotate("a:1", failed_hard=True)
    c._rotate("b:1", failed_hard=True)
    assert c.leader == "a:1"


def test_error_mapping():
    e = map_error(_Err(grpc.StatusCode.FAILED_PRECONDITION, "not leader",
                       (("orbitmq-error", "NOT_LEADER"), ("orbitmq-leader", "x:1"))), "y:1")
    assert isinstance(e, NotLeader) and e.leader == "x:1"
    e = map_error(_Err(grpc.StatusCode.DEADLINE_EXCEEDED, "late", (("orbitmq-error", "REPLICATION_TIMEOUT"),)), "y:1")
    assert isinstance(e, CommitTimeout) and e.code == "REPLICATION_TIMEOUT"
    e = map_error(_Err(grpc.StatusCode.UNAVAILABLE, "down"), "y:1")
    assert isinstance(e, NoLeader)
    e = map_error(_Err(grpc.StatusCode.INVALID_ARGUMENT, "bad"), "y:1")
    assert type(e) is ControllerError and e.code == "INVALID_ARGUMENT"


def test_needs_addresses():
    try:
        ControllerClient([" ", ""])
    except ValueError as e:
        assert "no controller addresses" in str(e)
    else:
        raise AssertionError("accepted an empty address list")
