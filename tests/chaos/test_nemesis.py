"""The seeded nemesis schedule (pure): reproducible, bounded, covering, combinations well formed."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.chaos.nemesis import DEFAULT_KINDS, KINDS, PROCESS_KINDS, schedule


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
