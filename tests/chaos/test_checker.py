"""The chaos checker (pure): each violation it must find, and clean histories it must pass."""

from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.chaos.checker import (
    Delivery,
    FaultWindow,
    MasterChange,
    Send,
    acked_overwritten,
    check,
    deposed_acks,
    duplicates,
    lost_acked,
    max_masters_per_epoch,
    order_violations,
    summarize_windows,
    unacked_delivered,
    unavailability,
)

Q = "broker-a"


def ack(i, off, *, key="", seq=0, qid=0, epoch=1, broker="m1", start=None, end=None):
    start = float(i) if start is None else start
    return Send(f"id{i}", start, start + 0.01 if end is None else end, True, key, seq, Q, qid, off, epoch, broker)


def deliver(s_or_id, off=None, qid=0, at=0.0):
    if isinstance(s_or_id, Send):
        return Delivery(s_or_id.id, s_or_id.broker_set, s_or_id.queue_id, s_or_id.queue_offset, at)
    return Delivery(s_or_id, Q, qid, off, at)


# ---- lost / expired / overwritten -------------------------------------------------------------------

def test_a_lost_ack_is_found():
    sends = [ack(1, 0), ack(2, 1), ack(3, 2)]
    lost, expired = lost_acked(sends, [deliver(sends[0]), deliver(sends[2])])
    assert lost == ["id2"] and expired == []
    r = check(sends, [deliver(sends[0]), deliver(sends[2])], [], [])
    assert r["lost_acked"] == 1 and r["ok"] is False and r["samples"]["lost"] == ["id2"]


def test_an_unread_message_below_the_expiry_floor_is_expired_not_lost():
    sends = [ack(1, 0), ack(2, 5)]
    lost, expired = lost_acked(sends, [], {(Q, 0): 3})
    assert expired == ["id1"] and lost == ["id2"]


def test_failed_sends_are_never_lost():
    failed = Send("x", 0, 1, False, error="REPLICATION_TIMEOUT")
    assert lost_acked([failed], []) == ([], [])


def test_an_acked_position_holding_another_message_is_found():
    s = ack(1, 7)
    assert acked_overwritten([s], [deliver("other", 7)]) == ["id1"]
    assert acked_overwritten([s], [deliver(s)]) == []
    assert acked_overwritten([s], [deliver("other", 7, qid=1)]) == []
    assert check([s], [deliver("other", 7), deliver("id1", 8)], [], [])["acked_overwritten"] == 1


# ---- duplicates ------------------------------------------------------------------------------------------

def test_duplicates_and_redeliveries_are_counted_apart():
    ds = [deliver("a", 0), deliver("a", 0), deliver("a", 3), deliver("b", 1), deliver("b", 1), deliver("b", 1)]
    assert duplicates(ds) == (1, 3)     # a stored twice; a@0 once more, b@1 twice more


def test_unacked_delivered_is_counted():
    sends = [ack(1, 0), Send("f", 0, 1, False)]
    assert unacked_delivered(sends, [deliver("id1", 0), deliver("f", 1), deliver("ghost", 2), deliver("f", 1)]) == 2


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 3), st.integers(0, 20)), max_size=40))
def test_duplicate_counts_match_a_naive_count(items):
    ds = [Delivery(i, Q, q, o) for i, q, o in items]
    dup, red = duplicates(ds)
    assert red == len(items) - len(set(items))
    assert dup == sum(len({(q, o) for j, q, o in items if j == i}) - 1 for i in {x[0] for x in items})


# ---- order -------------------------------------------------------------------------------------------------

def test_in_order_keyed_sends_pass_and_an_inversion_is_found():
    sends = [ack(i, i, key="k", seq=i) for i in range(5)]
    assert order_violations(sends, [deliver(s) for s in sends]) == []
    swapped = [deliver("id0", 0), deliver("id1", 2), deliver("id2", 1), deliver("id3", 3), deliver("id4", 4)]
    assert order_violations(sends, swapped) == ["k:1"]


def test_order_is_per_key_and_ignores_unkeyed_and_unacked_messages():
    a = [ack(i, 2 * i, key="a", seq=i) for i in range(3)]
    b = [ack(10 + i, 2 * i + 1, key="b", seq=i) for i in range(3)]
    unkeyed = ack(20, 100)
    failed = Send("f", 0, 1, False, "a", 0, Q, 0, 50)
    ds = [deliver(s) for s in a + b + [unkeyed]] + [deliver("f", 50), deliver("id20", 0, qid=3)]
    assert order_violations(a + b + [unkeyed, failed], ds) == []


def test_delivery_order_does_not_matter_only_queue_offsets_do():
    sends = [ack(i, i, key="k", seq=i) for i in range(4)]
    assert order_violations(sends, [deliver(s) for s in reversed(sends)]) == []


def test_a_key_spread_over_two_queues_is_a_violation():
    s0, s1 = ack(0, 0, key="k", seq=0), ack(1, 0, key="k", seq=1, qid=1)
    assert order_violations([s0, s1], [deliver(s0), deliver(s1)]) == ["k:queue broker-a/1"]


def test_a_duplicate_later_copy_does_not_make_an_order_violation():
    sends = [ack(i, i, key="k", seq=i) for i in range(3)]
    ds = [deliver(s) for s in sends] + [deliver("id0", 9)]
    assert order_violations(sends, ds) == []


@settings(max_examples=200)
@given(st.permutations(range(8)))
def test_order_violations_is_zero_exactly_when_offsets_follow_seqs(perm):
    sends = [ack(i, perm[i], key="k", seq=i) for i in range(8)]
    v = order_violations(sends, [deliver(s) for s in sends])
    assert (v == []) == (list(perm) == sorted(perm))


# ---- masters per epoch / deposed masters -------------------------------------------------------------------

def test_two_masters_in_one_epoch_are_found():
    ch = [MasterChange(Q, 1, 1), MasterChange(Q, 2, 2), MasterChange(Q, 2, 3), MasterChange("b", 2, 9)]
    assert max_masters_per_epoch(ch) == 2
    r = check([], [], ch, [])
    assert r["max_masters_per_epoch"] == 2 and r["ok"] is False
    assert max_masters_per_epoch([MasterChange(Q, 1, 1), MasterChange(Q, 2, -1), MasterChange(Q, 3, 1)]) == 1


def test_an_epoch_going_backwards_is_a_regression():
    r = check([], [], [MasterChange(Q, 3, 1), MasterChange(Q, 2, 2)], [])
    assert r["epoch_regressions"] == 1 and r["ok"] is False


HISTORY = [MasterChange(Q, 1, 1, time=100.0), MasterChange(Q, 2, 2, time=200.0)]
IDS = {"m1": 1, "m2": 2}


def test_an_ack_by_a_broker_that_was_not_master_of_its_epoch_is_found():
    bad = ack(1, 0, epoch=1, broker="m2", start=150)
    out = deposed_acks([bad], HISTORY, IDS)
    assert len(out) == 1 and "acked by broker 2 in epoch 1, whose master is 1" in out[0]


def test_an_ack_in_an_epoch_superseded_before_the_send_started_is_found():
    late = ack(1, 0, epoch=1, broker="m1", start=200.5)
    assert len(deposed_acks([late], HISTORY, IDS)) == 1
    assert check([late], [deliver(late)], HISTORY, [], broker_ids=IDS)["acks_by_deposed_master"] == 1


def test_acks_in_the_current_epoch_or_sent_before_the_election_are_fine():
    ok = [ack(1, 0, epoch=1, broker="m1", start=199.0, end=201.0),   # in flight across the election
          ack(2, 1, epoch=2, broker="m2", start=250.0),
          ack(3, 2, epoch=1, broker="unknown-addr", start=150.0),    # unknown address: judged by history
          Send("f", 300, 301, False, epoch=1, broker="m1")]          # refused sends are not acks
    assert deposed_acks(ok, HISTORY, IDS) == []


def test_a_new_epoch_for_the_same_master_does_not_depose_it():
    hist = [MasterChange(Q, 1, 1, time=100.0), MasterChange(Q, 2, 1, time=200.0)]
    assert deposed_acks([ack(1, 0, epoch=1, broker="m1", start=200.2)], hist, IDS) == []


# ---- availability ------------------------------------------------------------------------------------------

def test_unavailability_is_fault_start_to_first_ack_of_a_send_started_after_it():
    faults = [FaultWindow("kill_master", 10.0, 14.0), FaultWindow("kill_learner", 20.0, 22.0),
              FaultWindow("kill_master", 30.0, 33.0)]
    acks = [(8.9, 9.0), (9.99, 10.01), (10.5, 12.5), (11.0, 12.4), (20.2, 20.25), (20.5, 21.0)]
    w = unavailability(faults, acks, run_end=40.0)
    assert [round(x, 6) for x in w] == [2.4, 0.25, 10.0]   # the ack at 10.01 was in flight before the kill: not counted
    s = summarize_windows(faults, w)
    assert s["unavailable_max_s"] == 10.0 and s["unavailable_median_s"] == 2.4
    assert s["unavailable_by_kind"]["kill_master"] == {"count": 2, "median_s": 6.2, "max_s": 10.0}
    assert s["unavailable_by_kind"]["kill_learner"]["count"] == 1


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 5)), max_size=30),
       st.lists(st.floats(0, 100), min_size=1, max_size=10))
def test_every_window_matches_a_naive_search(raw, starts):
    acks = [(a, a + d) for a, d in raw]
    faults = [FaultWindow("k", s, s + 1) for s in starts]
    for f, w in zip(faults, unavailability(faults, acks, 200.0), strict=True):
        naive = min((e for s, e in acks if s >= f.start), default=200.0)
        assert abs(f.start + w - naive) < 1e-6


def test_a_clean_run_is_ok_and_every_figure_is_a_number():
    sends = [ack(i, i, key="k" if i % 2 else "", seq=i) for i in range(10)]
    r = check(sends, [deliver(s) for s in sends], HISTORY, [FaultWindow("kill_master", 3.5, 5.0)], broker_ids=IDS)
    assert r["ok"] is True and r["lost_acked"] == 0 and r["faults_injected"] == 1
    for k in ("lost_acked", "duplicates", "order_violations", "unacked_delivered", "max_masters_per_epoch",
              "acks_by_deposed_master", "faults_injected", "unavailable_median_s", "unavailable_max_s"):
        assert isinstance(r[k], int | float), k


def test_loss_is_judged_on_the_read_back_and_expiry_excuses_only_what_was_read_live():
    sends = [ack(1, 0), ack(2, 1), ack(3, 5)]
    live = [deliver(sends[0]), deliver(sends[2])]
    # id1 read live, then expired (below the floor): fine; id2 expired unread; id3 read live but gone
    lost, expired = lost_acked(sends, [], {(Q, 0): 3}, live=live)
    assert lost == ["id3"] and expired == ["id2"]
    r = check(sends, live, [], [], readback=[deliver(sends[2])], min_offsets={(Q, 0): 3})
    assert r["lost_acked"] == 0 and r["expired_unread"] == 1 and r["delivered"] == 2


def test_the_read_back_is_not_counted_as_redelivery_but_its_duplicates_are():
    sends = [ack(1, 0), ack(2, 1)]
    live = [deliver(sends[0]), deliver(sends[1])]
    back = [deliver(sends[0]), deliver(sends[1]), deliver("id1", 2)]
    r = check(sends, live, [], [], readback=back)
    assert r["redeliveries"] == 0 and r["duplicates"] == 1 and r["deliveries"] == 2


def test_failover_is_the_first_ack_in_a_newer_epoch_before_the_next_fault():
    from orbitmq.chaos.checker import failovers

    def a(start, end, epoch):
        return Send(f"x{start}", start, end, True, broker_set=Q, epoch=epoch)

    sends = [a(9.0, 9.1, 1), a(10.5, 10.6, 1),            # the isolated master still acks (lease)
             a(11.0, 12.5, 2), a(12.0, 12.4, 2),           # new epoch from 12.4
             a(25.0, 25.1, 2),                             # flap at 24: no master change
             a(40.0, 43.0, 3)]                             # the epoch change after the next fault at 30
    faults = [FaultWindow("isolate_master_controllers", 10.0, 16.0), FaultWindow("flap_link", 24.0, 27.0),
              FaultWindow("kill_master", 30.0, 35.0)]
    h = failovers(faults, sends)
    assert [round(x, 6) if x is not None else None for x in h] == [2.4, None, 13.0]
    s = summarize_windows(faults, [0.5, 1.0, 13.0], h)
    assert s["failover_by_kind"] == {"isolate_master_controllers": {"count": 1, "median_s": 2.4, "max_s": 2.4},
                                     "kill_master": {"count": 1, "median_s": 13.0, "max_s": 13.0}}
    assert s["failover_max_s"] == 13.0
