"""Route parsing, queue selection and error mapping (pure parts of the client)."""

from __future__ import annotations

import grpc
from hypothesis import given
from hypothesis import strategies as st

from orbitmq.client import errors
from orbitmq.client.routes import MessageQueue, RouteInfo, select_by_hash, select_round_robin
from orbitmq.protos import common_pb2, namesrv_pb2


def route(**perms):
    r = namesrv_pb2.TopicRoute(topic="T")
    for bset, (perm, master) in perms.items():
        r.queues.append(namesrv_pb2.QueueData(broker_set=bset, read_queues=2, write_queues=3, perm=perm))
        bs = namesrv_pb2.BrokerSetData(broker_set=bset, master_id=0 if master else -1,
                                       master_address=f"127.0.0.1:{len(bset)}0" if master else "")
        bs.replicas[1] = f"127.0.0.1:{len(bset)}1"
        if master:
            bs.replicas[0] = bs.master_address
        r.broker_sets.append(bs)
    return RouteInfo.from_proto(r)


def test_route_writable_only_on_sets_with_master_and_write_perm():
    info = route(a=(6, True), bb=(6, False), ccc=(4, True))
    assert [q.broker_set for q in info.write_queues] == ["a"] * 3
    assert {q.broker_set for q in info.read_queues} == {"a", "bb", "ccc"}
    assert info.read_address("bb") == "127.0.0.1:21"   # no master: a replica serves reads
    assert info.read_address("a") == "127.0.0.1:10"
    assert info.read_address("zz") is None


def test_round_robin_avoids_failed_sets_unless_all_failed():
    qs = [MessageQueue("T", b, i) for b in "ab" for i in range(2)]
    picks = [select_round_robin(qs, n) for n in range(8)]
    assert picks[:4] == qs and picks[4:] == qs
    assert {select_round_robin(qs, n, avoid={"a"}).broker_set for n in range(6)} == {"b"}
    assert select_round_robin(qs, 3, avoid={"a", "b"}) == qs[3]
    assert select_round_robin([], 0) is None


@given(st.text(min_size=1), st.integers(1, 30))
def test_hash_selector_is_stable(key, n):
    qs = [MessageQueue("T", "a", i) for i in range(n)]
    assert select_by_hash(qs, None, key) == select_by_hash(list(qs), None, key)


def test_queue_key_roundtrip():
    mq = MessageQueue("my@topic", "bs-1", 7)
    assert MessageQueue.parse(mq.key()) == mq


def test_every_error_code_maps_to_its_class():
    for name in common_pb2.ErrorCode.keys():
        if name == "ERROR_UNSPECIFIED":
            continue
        err = errors.map_error(grpc.StatusCode.FAILED_PRECONDITION, (("orbitmq-error", name),), "words", "addr")
        assert type(err) is errors.BY_CODE[name]
        assert err.code == name and err.details == "words" and err.address == "addr"


def test_errors_without_name_map_by_status():
    assert isinstance(errors.map_error(grpc.StatusCode.UNAVAILABLE, (), "refused"), errors.UnavailableError)
    assert isinstance(errors.map_error(grpc.StatusCode.DEADLINE_EXCEEDED, None, ""), errors.RequestTimeoutError)
    assert isinstance(errors.map_error(grpc.StatusCode.UNKNOWN, None, "x"), errors.InternalError)
    unknown = errors.map_error(grpc.StatusCode.INVALID_ARGUMENT, (("orbitmq-error", "NEW_THING"),), "x")
    assert isinstance(unknown, errors.BadRequestError) and unknown.code == "NEW_THING"


def test_retriable_and_stale_route_classes():
    assert errors.NotMasterError().retriable and errors.NotMasterError().stale_route
    assert errors.UnavailableError().stale_route and errors.FencedError().stale_route
    assert not errors.BadTopicNameError().retriable
    assert not errors.TopicNotFoundError().retriable
    assert isinstance(errors.BodyEmptyError(), errors.BadRequestError)
    md = (("orbitmq-error", "NOT_MASTER"), ("orbitmq-master", "127.0.0.1:5"))
    assert errors.map_error(grpc.StatusCode.FAILED_PRECONDITION, md, "").master_address == "127.0.0.1:5"
