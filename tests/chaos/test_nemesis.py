"""The seeded nemesis schedule (pure): reproducible, bounded, covering, combinations well formed."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.chaos.nemesis import DEFAULT_KINDS, KINDS, PROCESS_KINDS, Fault, Skip, View, resolve, schedule


def test_same_seed_same_schedule_other_seed_other_schedule():
    a, b = schedule(7, 600), schedule(7, 600)
    assert [f.to_dict() for f in a] == [f.to_dict() for f in b]
    assert [f.to_dict() for f in schedule(8, 600)] != [f.to_dict() for f in a]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.floats(10, 900), st.floats(0, 1),
       st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=len(KINDS), unique=True))
def test_faults_fit_the_run_do_not_overlap_and_are_well_formed(seed, duration, ratio, kinds):
    fs = schedule(seed, duration, kinds, combo_ratio=ratio)
    end = 0.0
    for i, f in enumerate(fs):
        assert f.index == i
        assert f.at_s >= 5.0 and f.at_s >= end          # after warm-up, after the previous one healed
        assert f.at_s + f.hold_s <= duration - 5.0 + 1e-6
        assert 1 <= len(f.kinds) <= 2 and set(f.kinds) <= set(kinds)
        if len(f.kinds) == 2:
            assert KINDS[f.kinds[0]][0] != KINDS[f.kinds[1]][0]   # never two faults of one group
        lo = max(KINDS[k][1][0] for k in f.kinds)
        hi = max(KINDS[k][1][1] for k in f.kinds)
        assert lo - 1e-3 <= f.hold_s <= hi + 1e-3
        end = f.at_s + f.hold_s + 4.0 - 1e-6                     # gap at least 4 s
        if "slow_replication" in f.kinds:
            assert f.params["latency_ms"] > 0 and f.params["rate_kbps"] > 0


def test_a_short_run_deals_distinct_kinds_before_repeating():
    for seed in range(20):
        fs = schedule(seed, 90, PROCESS_KINDS, combo_ratio=0.0)
        firsts = [f.kinds[0] for f in fs[:len(PROCESS_KINDS)]]
        assert len(firsts) == len(set(firsts)) and len(fs) >= 4


def test_a_long_run_covers_every_kind_and_some_combinations():
    fs = schedule(1, 600, DEFAULT_KINDS)
    seen = {k for f in fs for k in f.kinds}
    assert seen == set(DEFAULT_KINDS)
    assert any(len(f.kinds) == 2 for f in fs)
    assert "expiry_under_load" not in seen


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown fault kinds"):
        schedule(1, 60, ["kill_everything"])
    with pytest.raises(ValueError):
        schedule(1, 60, [])
    with pytest.raises(ValueError):
        schedule(1, -1)


# ---- roles -> actions (pure) -------------------------------------------------------------------------------

VIEW = View(master="b-1", followers=("b-2", "b-3"), learners=("b-4",), replicas=("b-1", "b-2", "b-3", "b-4"),
            controllers=("c1", "c2", "c3"), leader="c2",
            nodes=("c1", "c2", "c3", "n1", "n2", "b-1", "b-2", "b-3", "b-4"))


def one(kind, **params):
    return resolve(Fault(0, 5.0, 5.0, (kind,), params), VIEW)


def test_master_faults_target_the_master():
    assert [(a.op, a.a) for a in one("kill_master")] == [("kill", ("b-1",))]
    assert [(a.op, a.a) for a in one("pause_master")] == [("pause", ("b-1",))]
    (iso,) = one("isolate_master_controllers")
    assert (iso.op, iso.a, iso.b) == ("partition", ("b-1",), ("c1", "c2", "c3"))   # clients, followers untouched
    (iso,) = one("isolate_master_followers")
    assert (iso.op, iso.a, iso.b) == ("partition", ("b-1",), ("b-2", "b-3", "b-4"))


def test_follower_faults_pick_a_follower_by_index_and_never_the_master():
    (cut,) = one("cut_follower", follower=3)
    assert cut.a == ("b-3",) and "b-3" not in cut.b and set(cut.b) == set(VIEW.nodes) - {"b-3"}
    (slow,) = one("slow_replication", follower=0, latency_ms=200, jitter_ms=20, rate_kbps=64)
    assert (slow.op, slow.a, slow.b) == ("slow", ("b-2",), ("b-1",))
    assert slow.params == {"latency_ms": 200, "jitter_ms": 20, "rate_kbps": 64}
    (flap,) = one("flap_link", follower=1)
    assert (flap.op, flap.a, flap.b, flap.targets) == ("flap", ("b-3",), ("b-1",), ["b-3", "b-1"])


def test_controller_and_learner_faults():
    assert [(a.op, a.a) for a in one("kill_controller_leader")] == [("kill", ("c2",))]
    (part,) = one("partition_controllers")
    assert (part.a, part.b) == (("c2",), ("c1", "c3"))
    assert [(a.op, a.a) for a in one("kill_learner", learner=5)] == [("kill", ("b-4",))]
    assert one("expiry_under_load", filler_kib=4)[0].params == {"filler_kib": 4}


def test_a_combination_resolves_both_against_the_same_view():
    acts = resolve(Fault(0, 5.0, 5.0, ("kill_master", "cut_follower"), {"follower": 0}), VIEW)
    assert [(a.kind, a.op, a.a) for a in acts] == [("kill_master", "kill", ("b-1",)),
                                                    ("cut_follower", "partition", ("b-2",))]


def test_an_empty_role_skips_the_fault():
    empty = View(None, (), (), ("b-1",), ("c1",), None, ("c1", "b-1"))
    for kind in ("kill_master", "cut_follower", "kill_learner", "kill_controller_leader", "partition_controllers"):
        with pytest.raises(Skip):
            resolve(Fault(0, 1.0, 1.0, (kind,), {}), empty)


@given(st.integers(0, 10**6))
def test_every_scheduled_fault_resolves_on_a_whole_cluster(seed):
    for f in schedule(seed, 300, sorted(KINDS)):
        acts = resolve(f, VIEW)
        assert [a.kind for a in acts] == list(f.kinds)
        for a in acts:
            assert set(a.a) | set(a.b) <= set(VIEW.nodes) and not set(a.a) & set(a.b)
