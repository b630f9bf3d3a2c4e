"""The replication port's admission rules (pure): HELLO fields, signatures, the controller's view,
one live connection per id; and the load-limit cores (in-flight requests, held bytes, disk ratio)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbitmq.broker.ha import connection as hc
from orbitmq.broker.ha import protocol as hp
from orbitmq.broker.ha.epochs import EpochEntry as E
from orbitmq.broker.ha.hello_check import HelloPolicy, ReplayGuard, admit_hello, may_replace, sign_hello
from orbitmq.common.limits import ByteBudget, InflightLimits, disk_refusal

SECRET = b"0123456789abcdef-cluster"
NOW = 1_700_000_000_000
ONE_EPOCH = (E(1, 0),)


def hello(bid: int = 2, learner: bool = False, mx: int = 10, epochs=ONE_EPOCH) -> hp.Hello:
    return hp.Hello(bid, learner, mx, tuple(epochs))


def roundtrip(h: hp.Hello) -> hp.Hello:
    (out,) = hp.decode_all(hp.encode(h))
    assert isinstance(out, hp.Hello)
    return out


def test_fields_out_of_range_are_refused():
    p = HelloPolicy(master_id=1)
    assert admit_hello(hello(), p, NOW) is None
    for bad, word in ((hello(bid=-3), "not a replica id"), (hello(bid=0), "not a replica id"),
                      (hello(mx=-1), "negative max offset"), (hello(epochs=(E(-1, 0),)), "negative epoch"),
                      (hello(epochs=(E(1, -5),)), "negative epoch"), (hello(bid=1), "the master's")):
        r = admit_hello(roundtrip(bad), p, NOW)
        assert r is not None and r.code == "BAD_REQUEST" and word in r.message, (bad, r)


def test_signature_required_checked_and_not_replayable():
    p = HelloPolicy(master_id=1, secret=SECRET)
    r = admit_hello(roundtrip(hello()), p, NOW)
    assert r is not None and r.code == "NO_PERMISSION" and "not signed" in r.message
    assert admit_hello(roundtrip(sign_hello(hello(), b"another-secret-of-16", NOW)), p, NOW).code == "NO_PERMISSION"
    old = roundtrip(sign_hello(hello(), SECRET, NOW - 120_000))
    assert "clock" in admit_hello(old, p, NOW).message
    good = roundtrip(sign_hello(hello(), SECRET, NOW))
    assert good.auth and admit_hello(good, p, NOW + 5) is None
    replay = admit_hello(good, p, NOW + 10)
    assert replay is not None and "already used" in replay.message
    # the signature covers every field: an altered HELLO with a valid signature is refused
    altered = hp.Hello(good.broker_id, True, good.max_offset, good.epochs, good.auth)
    assert "bad signature" in admit_hello(altered, HelloPolicy(1, SECRET), NOW).message


def test_controller_view_decides_ids_and_learners():
    p = HelloPolicy(master_id=1, replicas={1: False, 2: False, 4: True})
    assert admit_hello(hello(2), p, NOW) is None
    assert admit_hello(hello(4, learner=True), p, NOW) is None
    claim = admit_hello(hello(4, learner=False), p, NOW)
    assert claim is not None and claim.code == "NO_PERMISSION" and "learner" in claim.message
    stranger = admit_hello(hello(9), p, NOW)
    assert stranger is not None and "not a replica" in stranger.message
    assert admit_hello(hello(2, learner=True), p, NOW) is None   # a downgrade only gives up counting


def test_master_connection_refuses_before_welcome():
    m = hc.MasterConnection(1, 3, policy=HelloPolicy(1, replicas={1: False, 4: True}))
    out = m.receive_data(hp.encode(hello(4, learner=False)), hc.MasterLog(10, 0, 10, (E(1, 0),)), now_ms=NOW)
    assert len(out) == 1 and isinstance(out[0].frame, hp.Refuse) and out[0].frame.code == "NO_PERMISSION"
    assert m.state is hc.ConnState.CLOSED


def test_follower_signs_and_master_admits_it():
    f = hc.FollowerConnection(2, False, secret=SECRET)
    (send,) = f.start(0, [], 0, now_ms=NOW)
    m = hc.MasterConnection(1, 3, policy=HelloPolicy(1, secret=SECRET))
    out = m.receive_data(hp.encode(send.frame), hc.MasterLog(0, 0, 0, ()), now_ms=NOW + 100)
    assert isinstance(out[0], hc.Hello) and isinstance(out[1].frame, hp.Welcome)


def test_master_decoder_bounds_what_a_peer_can_make_it_buffer():
    m = hc.MasterConnection(1, 3)
    header = hp.HEADER.pack(hp.MAGIC, hp.VERSION, hp.T_HELLO, 8 << 20, 0)
    with pytest.raises(hp.FrameError, match="exceeds"):
        m.receive_data(header, hc.MasterLog(0, 0, 0, ()))


def test_replace_only_a_silent_connection():
    assert not may_replace(0.3, 1.0)
    assert may_replace(1.0, 1.0) and may_replace(7.5, 1.0)


def test_replay_guard_is_bounded():
    g = ReplayGuard(window_ms=1000, limit=8)
    for i in range(100):
        assert g.first_use(f"s{i}", NOW + i)
    assert len(g._seen) <= 8
    assert not g.first_use("s99", NOW + 100)


@given(st.binary(max_size=300))
def test_any_hello_payload_is_a_frame_error_or_a_decision(payload):
    try:
        h = hp.decode_payload(hp.T_HELLO, payload)
    except hp.FrameError:
        return
    r = admit_hello(h, HelloPolicy(1, secret=SECRET, replicas={2: False}), NOW)
    assert r is None or r.code in ("BAD_REQUEST", "NO_PERMISSION")


def test_inflight_limits_per_connection_and_total():
    lim = InflightLimits(per_connection=2, total=3)
    assert lim.admit("a") is None and lim.admit("a") is None
    r = lim.admit("a")
    assert r is not None and r.code == "TOO_MANY_REQUESTS" and "connection" in r.message
    assert lim.admit("b") is None
    r = lim.admit("c")
    assert r is not None and "server" in r.message
    lim.release("a")
    assert lim.admit("c") is None
    for c in ("a", "b", "c"):
        lim.release(c)
    assert lim.in_flight == 0 and lim.of("a") == 0
    with pytest.raises(ValueError):
        lim.release("a")
    unlimited = InflightLimits(0, 0)
    assert all(unlimited.admit("x") is None for _ in range(1000))


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 50)), max_size=60), st.integers(0, 120))
def test_byte_budget_never_holds_more_than_its_limit_except_one_oversized(ops, limit):
    b = ByteBudget(limit)
    held: list[int] = []
    for take, n in ops:
        if take:
            if b.take(n) is None:
                held.append(n)
        elif held:
            b.give(held.pop())
        assert b.held == sum(held)
        assert not limit or b.held <= limit or len(held) == 1


def test_disk_refusal_ratio():
    assert disk_refusal(50, 100, 0.9) is None
    r = disk_refusal(95, 100, 0.9)
    assert r is not None and r.code == "DISK_FULL" and "95.0%" in r.message
    assert disk_refusal(100, 100, 1.0) is None and disk_refusal(5, 0, 0.5) is None
