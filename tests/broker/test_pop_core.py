"""Pop consumption rules (broker/pop_core.py): receipt handles, invisibility, attempts, DLQ, FIFO, delay."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.broker import pop_core as pc
from orbitmq.broker.pop_core import Candidate, Handle, PopError, QueueState


def H(d: pc.Delivery, off_q: int = 0) -> Handle:
    return Handle("b", "T", off_q, d.offset, d.seq)


def run_pop(state, now, cands, batch=32, inv=1000, max_attempts=3, fifo=False):
    r = pc.pop(state, now, [c for c in cands if c.offset >= state.next], batch, inv, max_attempts, fifo)
    if r.event:
        pc.apply(state, r.event)
    return r


def test_handle_round_trip_and_forgeries():
    h = Handle("broker-a", "orders", 3, 12345, 7)
    assert Handle.decode(h.encode()) == h
    for bad in ["", "garbage", "!!!!", h.encode()[:-3], "eyJhIjoxfQ", Handle("b", "t", 0, 0, 1).encode() + "x"]:
        with pytest.raises(PopError) as e:
            Handle.decode(bad)
        assert e.value.code == "INVALID_RECEIPT_HANDLE"


def test_receive_ack_and_nothing_twice():
    s = QueueState()
    cands = [Candidate(i) for i in range(5)]
    r = run_pop(s, 0, cands, batch=3)
    assert [d.offset for d in r.deliver] == [0, 1, 2] and all(d.attempt == 1 for d in r.deliver)
    r2 = run_pop(s, 10, cands, batch=10)
    assert [d.offset for d in r2.deliver] == [3, 4]
    assert run_pop(s, 20, cands).deliver == []
    for d in r.deliver + r2.deliver:
        pc.apply(s, pc.ack(s, H(d)))
    assert s.inflight == {} and s.ack_offset() == 5
    assert run_pop(s, 5000, cands).deliver == []  # acknowledged: never again


def test_redelivery_after_invisible_time_counts_attempts_then_dead_letters():
    s = QueueState()
    cands = [Candidate(0)]
    seen = []
    for t in (0, 1000, 2000):
        r = run_pop(s, t, cands, inv=1000, max_attempts=3)
        assert [d.offset for d in r.deliver] == [0]
        seen.append(r.deliver[0].attempt)
        assert run_pop(s, t + 999, cands, max_attempts=3).deliver == []  # still invisible
    assert seen == [1, 2, 3]
    r = run_pop(s, 3000, cands, max_attempts=3)
    assert r.deliver == [] and r.dead_letter == [(0, s.inflight[0].seq)]
    pc.apply(s, pc.dead_letter_done(r.dead_letter))
    assert s.inflight == {} and s.ack_offset() == 1


def test_stale_and_unknown_handles_are_refused():
    s = QueueState()
    d1 = run_pop(s, 0, [Candidate(0)], inv=100).deliver[0]
    d2 = run_pop(s, 100, [Candidate(0)], inv=100).deliver[0]  # redelivered: d1's handle is stale
    with pytest.raises(PopError, match="stale"):
        pc.ack(s, H(d1))
    pc.apply(s, pc.ack(s, H(d2)))
    with pytest.raises(PopError, match="already acknowledged"):
        pc.ack(s, H(d2))
    with pytest.raises(PopError):
        pc.ack(s, Handle("b", "T", 0, 99, 1))


def test_change_invisible_duration_gives_a_new_handle_and_moves_visibility():
    s = QueueState()
    d = run_pop(s, 0, [Candidate(0)], inv=1000).deliver[0]
    ev, seq = pc.change_invisible(s, H(d), 500, 10_000)
    pc.apply(s, ev)
    assert run_pop(s, 5000, [Candidate(0)]).deliver == []
    with pytest.raises(PopError):
        pc.ack(s, H(d))  # the old handle is stale now
    pc.apply(s, pc.ack(s, Handle("b", "T", 0, 0, seq)))
    assert s.inflight == {}
    with pytest.raises(PopError) as e:
        pc.change_invisible(s, Handle("b", "T", 0, 0, seq), 0, 5)
    assert e.value.code == "INVALID_RECEIPT_HANDLE"
    with pytest.raises(PopError) as e:
        pc.change_invisible(s, Handle("b", "T", 0, 0, seq), 0, -1)
    assert e.value.code == "ILLEGAL_INVISIBLE_TIME"


def test_nack_with_zero_invisibility_redelivers_at_once():
    s = QueueState()
    d = run_pop(s, 0, [Candidate(0)], inv=60_000).deliver[0]
    pc.apply(s, pc.change_invisible(s, H(d), 10, 0)[0])
    r = run_pop(s, 10, [Candidate(0)])
    assert [(x.offset, x.attempt) for x in r.deliver] == [(0, 2)]


def test_bad_arguments():
    with pytest.raises(PopError):
        pc.pop(QueueState(), 0, [], 0, 1000, 3)
    with pytest.raises(PopError):
        pc.pop(QueueState(), 0, [], 1, 0, 3)


def test_delay_is_held_until_its_delivery_time():
    s = QueueState()
    cands = [Candidate(0, deliver_at=5000), Candidate(1)]
    r = run_pop(s, 0, cands)
    assert [d.offset for d in r.deliver] == [1] and r.wake_at == 1000
    assert 0 not in [d.offset for d in run_pop(copy.deepcopy(s), 4999, cands).deliver]
    s2 = copy.deepcopy(s)
    r = run_pop(s2, 5000, cands, max_attempts=1)
    assert [(d.offset, d.attempt) for d in r.deliver if d.offset == 0] == [(0, 1)]  # attempt 0 never dead-letters
    with pytest.raises(PopError):
        pc.ack(s, Handle("b", "T", 0, 0, s.inflight[0].seq))  # not delivered yet


def test_fifo_blocks_behind_an_unfinished_message_of_the_group():
    s = QueueState()
    cands = [Candidate(0, "A"), Candidate(1, "B"), Candidate(2, "A"), Candidate(3, "B")]
    r = run_pop(s, 0, cands, fifo=True)
    assert [d.offset for d in r.deliver] == [0, 1]  # 2 waits for 0
    assert run_pop(s, 10, cands, fifo=True).deliver == []
    pc.apply(s, pc.ack(s, H(r.deliver[0])))
    r2 = run_pop(s, 20, cands, fifo=True)
    assert [d.offset for d in r2.deliver] == [2]  # 3 waits for 1 (B)
    # 1 times out: redelivered before anything after it
    r3 = run_pop(s, 1000, cands, fifo=True)
    assert [(d.offset, d.attempt) for d in r3.deliver] == [(1, 2)]
    pc.apply(s, pc.ack(s, H(r3.deliver[0])))
    r4 = run_pop(s, 1001, cands, fifo=True)
    assert [(d.offset, d.attempt) for d in r4.deliver] == [(3, 1)]  # the held one, first delivery


def test_fifo_does_not_block_other_groups_of_the_queue():
    s = QueueState()
    cands = [Candidate(0, "A"), Candidate(1, "A"), Candidate(2, "A"), Candidate(3, "B"), Candidate(4, "C")]
    r = run_pop(s, 0, cands, fifo=True)
    assert [d.offset for d in r.deliver] == [0, 3, 4]
    assert {o: e.attempt for o, e in s.inflight.items()} == {0: 1, 1: 0, 2: 0, 3: 1, 4: 1}
    with pytest.raises(PopError):
        pc.ack(s, Handle("b", "T", 0, 1, s.inflight[1].seq))  # held, not delivered


def test_apply_replay_is_idempotent_for_a_suffix():
    s = QueueState()
    events = []
    cands = [Candidate(i, f"g{i % 2}") for i in range(6)]
    for t in range(0, 5000, 700):
        r = pc.pop(s, t, cands, 2, 1000, 3, True)
        if r.event:
            events.append(r.event)
            pc.apply(s, r.event)
        if r.dead_letter:
            events.append(pc.dead_letter_done(r.dead_letter))
            pc.apply(s, events[-1])
        if r.deliver and t % 1400 == 0:
            ev = pc.ack(s, H(r.deliver[0]))
            events.append(ev)
            pc.apply(s, ev)
    for cut in range(len(events)):
        rebuilt = QueueState()
        for e in events:
            pc.apply(rebuilt, e)
        for e in events[cut:]:
            pc.apply(rebuilt, copy.deepcopy(e))
        assert rebuilt.to_json() == s.to_json()
    assert QueueState.from_json(s.to_json()).to_json() == s.to_json()


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 8), fifo=st.booleans(), max_attempts=st.integers(1, 4),
       ops=st.lists(st.tuples(st.sampled_from(["pop", "ack", "nack", "tick"]), st.integers(0, 7),
                              st.integers(1, 3)), max_size=60),
       groups=st.lists(st.sampled_from("AB"), min_size=8, max_size=8))
def test_model(n, fifo, max_attempts, ops, groups):
    """At-least-once, no double delivery while invisible, attempts +1, DLQ after max_attempts, FIFO order,
    and the state rebuilt from the logged events equals the live one."""
    s = QueueState()
    cands = [Candidate(i, groups[i] if fifo else "") for i in range(n)]
    now = 0
    inv = 100
    current: dict[int, pc.Delivery] = {}  # offset -> its current delivery
    attempts = {i: 0 for i in range(n)}
    done: set[int] = set()
    dead: set[int] = set()
    log = []
    first_delivery_order: list[int] = []

    def step_pop(batch):
        r = pc.pop(s, now, cands, batch, inv, max_attempts, fifo)
        for d in r.deliver:
            assert d.offset not in done
            prev = current.get(d.offset)
            assert prev is None or prev.visible_at <= now  # never two visible deliveries at once
            assert d.attempt == attempts[d.offset] + 1 <= max_attempts
            attempts[d.offset] = d.attempt
            current[d.offset] = d
            if d.attempt == 1:
                first_delivery_order.append(d.offset)
            if fifo:  # every earlier message of its group is finished
                for o in range(d.offset):
                    if groups[o] == groups[d.offset]:
                        assert o in done or o in dead
        for off, _seq in r.dead_letter:
            assert attempts[off] == max_attempts
            dead.add(off)
            current.pop(off, None)
        assert len(r.deliver) <= batch
        if r.event:
            log.append(r.event)
            pc.apply(s, r.event)
        if r.dead_letter:
            log.append(pc.dead_letter_done(r.dead_letter))
            pc.apply(s, log[-1])

    for op, idx, arg in ops:
        if op == "pop":
            step_pop(arg)
        elif op == "tick":
            now += arg * 60
        elif op in ("ack", "nack") and current:
            off = sorted(current)[idx % len(current)]
            d = current[off]
            h = Handle("b", "T", 0, off, d.seq)
            if op == "ack":
                ev = pc.ack(s, h)
                done.add(off)
                del current[off]
            else:
                ev, seq = pc.change_invisible(s, h, now, 0)
                current[off] = pc.Delivery(off, d.attempt, seq, now)
            log.append(ev)
            pc.apply(s, ev)
    # drain: keep receiving (never acking) until everything is done or dead-lettered
    for _ in range(n * (max_attempts + 2) + 5):
        now += inv
        step_pop(8)
    assert done | dead == set(range(n)) and not (done & dead)
    assert s.inflight == {} and s.ack_offset() == n
    if not fifo:
        assert first_delivery_order == sorted(first_delivery_order)
    rebuilt = QueueState()
    for e in log:
        pc.apply(rebuilt, e)
    assert rebuilt.to_json() == s.to_json()


def test_filtered_out_messages_are_skipped_up_to_the_scanned_end():
    s = QueueState()
    r = run_pop(s, 0, [Candidate(3)], batch=5)
    assert [d.offset for d in r.deliver] == [3]
    pc.apply(s, pc.pop(s, 0, [], 5, 1000, 3, scanned_end=10).event)
    assert s.next == 10
    s2 = QueueState()
    r = pc.pop(s2, 0, [Candidate(0), Candidate(1)], 1, 1000, 3, scanned_end=10)
    assert r.event["next"] == 1  # stopped by the batch size: not beyond what it did not look at
