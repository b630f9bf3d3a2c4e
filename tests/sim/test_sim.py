"""The deterministic simulator: seeded runs of a whole deployment on the pure cores with faults,
invariants after every change, Hypothesis-explored fault schedules that shrink, exact replay.

Replay a failure: `python tests/sim/replay.py SEED` (derived schedule) or call
`sim_world.run(seed, faults=[Fault(...), ...])` with the schedule the failure printed.
`ORBITMQ_SIM_RUNS` (default 200) sets how many seeds the sweep runs, `ORBITMQ_SIM_SEED` its first seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from sim_stats import TOTALS
from sim_world import FAULT_KINDS, Fault, Outcome, Params, Violation, run

HERE = Path(__file__).parent


def _count(o: Outcome, seconds: float) -> Outcome:
    TOTALS["runs"] += 1
    TOTALS["events"] += o.events
    TOTALS["faults"] += o.faults
    TOTALS["acked"] += o.acked
    TOTALS["seconds"] += seconds
    return o


def _run(seed: int, faults: list[Fault] | None = None, params: Params | None = None, **kw) -> Outcome:
    t = time.perf_counter()
    return _count(run(seed, faults, params, **kw), time.perf_counter() - t)


def test_a_seed_replays_exactly_and_the_full_sweep_agrees():
    a = _run(7)
    b = _run(7, full_check=True)     # every invariant after every event: same timeline, nothing broken
    assert a.digest == b.digest and a.acked == b.acked and a.sent == b.sent
    assert _run(8).digest != a.digest


def test_the_timeline_does_not_depend_on_the_hash_seed():
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import sim_world; print(sim_world.run(11).digest)"
    digests = set()
    for hs_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": hs_seed},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_seed_sweep():
    """Many seeds, each with its own swarm parameters and derived fault schedule."""
    first = int(os.environ.get("ORBITMQ_SIM_SEED", "1000"))
    n = int(os.environ.get("ORBITMQ_SIM_RUNS", "200"))
    faults = acked = 0
    for seed in range(first, first + n):
        o = _run(seed)
        faults += o.faults
        acked += o.acked
    assert faults > n and acked > n   # the sweep did inject faults and did acknowledge sends


fault_st = hs.builds(Fault, at=hs.floats(0.2, 9.5).map(lambda x: round(x, 2)), kind=hs.sampled_from(FAULT_KINDS),
                     target=hs.integers(0, 63), duration=hs.floats(0.1, 8.0).map(lambda x: round(x, 2)))


@settings(max_examples=int(os.environ.get("ORBITMQ_SIM_EXAMPLES", "80")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=hs.integers(0, 2**31), faults=hs.lists(fault_st, max_size=14), drop=hs.sampled_from([0.0, 0.05, 0.2]),
       learner=hs.booleans(), sets=hs.integers(1, 2))
def test_hypothesis_explores_fault_schedules(seed, faults, drop, learner, sets):
    """Hypothesis draws the schedule as data, so a failure shrinks to the fewest faults."""
    _run(seed, sorted(faults, key=lambda f: f.at), Params(sets=sets, learner=learner, drop=drop, dup=0.05))


# Explicit schedules kept as scenarios: (seed, schedule, params). Every seed the simulator fails
# on is added here once fixed (none so far: see DESIGN.md "Simulator"). Brokers are a-1..a-3
# (targets 3..5 of "nodes" = c1..c3 + brokers; brokers alone for crash_broker: 0..2).
SCENARIOS: list[tuple[int, list[Fault], Params]] = [
    # issue 8: the master dies, then the rest of the set within the lease, then they come back
    (1, [Fault(5.0, "crash_master", 0, 4.0), Fault(5.2, "crash_broker", 0, 4.5), Fault(5.2, "crash_broker", 1, 5.0),
         Fault(5.2, "crash_broker", 2, 5.5)], Params()),
    # the master is cut off from everyone while it has sends in flight (#7017), then rejoins
    (2, [Fault(4.0, "isolate_master", 0, 5.0)], Params(drop=0.05)),
    # the master is paused (SIGSTOP) longer than its lease, then resumes into a newer epoch
    (3, [Fault(5.0, "pause_master", 0, 4.0)], Params()),
    # the controller leader is paused, then cut off, while the master loses a replication byte
    (4, [Fault(4.0, "pause_leader", 0, 2.0), Fault(6.5, "isolate_leader", 0, 3.0), Fault(6.0, "corrupt_ha", 0, 0.1)],
     Params(learner=True)),
    # the master keeps taking sends it cannot replicate, dies; it rejoins, cuts its divergent tail
    # and crashes right after the cut (before trimming its epoch list), then rejoins again
    (7, [Fault(4.0, "crash_after_truncate", 0, 8.0), Fault(4.0, "cut_replication", 0, 3.0),
         Fault(5.0, "crash_master", 0, 1.0)], Params()),
    # two sets, a split that separates masters from the controller majority
    (5, [Fault(3.0, "split", 11, 4.0), Fault(7.5, "crash_master", 1, 1.0)], Params(sets=2)),
]


def test_all_controllers_restart_without_an_election():
    """Every controller crashes and restarts while the brokers live: the state comes back from the
    log, the new leader rebuilds liveness, and the master is never replaced (only the first election)."""
    for seed in (21, 22, 23):
        o = _run(seed, [Fault(5.0, "crash_ctl", 0, 0.5), Fault(5.0, "crash_ctl", 1, 0.7), Fault(5.0, "crash_ctl", 2, 0.9)],
                 Params(), full_check=True)
        assert o.elections == 1 and o.raft_elections >= 2, o


# Seeds the simulator failed on, kept after the fix: (seed, schedule, params, what broke).
REGRESSIONS: list[tuple[int, list[Fault], Params, str]] = [
    # a controller leader paused for 7 s resumed and answered a broker's heartbeat before its Raft
    # tick noticed it was deposed: it renewed the lease of a master the new leader had just
    # replaced, and that master acknowledged into a superseded epoch. Fix: a node serves brokers
    # only while it heard from a majority within the leader fallback time (LeaderScan.serving).
    (10676, [Fault(0.888, "corrupt_ha", 57, 5.431), Fault(1.9, "pause_master", 26, 0.217),
             Fault(3.8, "pause_leader", 49, 7.404), Fault(4.821, "reset_ha", 18, 1.571),
             Fault(7.322, "pause_leader", 25, 0.876), Fault(7.399, "one_way", 26, 5.3),
             Fault(8.359, "corrupt_ha", 19, 3.423)],
     Params(sets=2, drop=0.1, frame_records=1, send_interval=0.05), "deposed leader renewed a lease"),
]


@pytest.mark.parametrize("seed,faults,params,what", REGRESSIONS)
def test_regression_seeds(seed, faults, params, what):
    _run(seed, faults, params, full_check=True)


def test_the_regression_fails_without_its_fix(monkeypatch):
    from orbitmq.controller import leader_scan
    monkeypatch.setattr(leader_scan.LeaderScan, "serving", lambda self, is_leader, age: is_leader and self.announced)
    seed, faults, params, _ = REGRESSIONS[0]
    with pytest.raises(Violation, match="acknowledged message .* while the committed master"):
        run(seed, faults, params)


@pytest.mark.parametrize("seed,faults,params", SCENARIOS)
def test_scenarios(seed, faults, params):
    o = _run(seed, faults, params, full_check=True)
    assert o.faults == len(faults) and o.acked > 0
    if any(f.kind == "crash_after_truncate" for f in faults):
        assert o.stats.get("crashed_mid_truncation", 0) >= 1, o.stats   # the schedule did hit the window


# ---- the checker itself: a broken rule must be caught ---------------------------------------------------

def _first_violation(seeds: range) -> str:
    for seed in seeds:
        try:
            run(seed)
        except Violation as e:
            return str(e)
    return ""


def test_a_master_ignoring_its_lease_is_caught(monkeypatch):
    from orbitmq.broker.ha import ack_policy
    monkeypatch.setattr(ack_policy.Lease, "valid", lambda self, now: True)
    assert "acknowledged message" in _first_violation(range(0, 40))


def test_a_confirm_offset_ignoring_the_sync_state_set_is_caught(monkeypatch):
    from orbitmq.broker.ha import sync_state
    monkeypatch.setattr(sync_state.SyncStateSet, "confirm_offset", lambda self, mx: mx)
    assert "passes member" in _first_violation(range(0, 10))


def test_electing_outside_the_sync_state_set_is_caught(monkeypatch):
    from orbitmq.controller import election
    orig = election.elect

    def unclean(bs, alive, preferred=0, designate=False, unclean_enabled=False, closed=frozenset(), handoff=False):
        return orig(bs, alive, preferred, designate, True, closed, handoff)
    monkeypatch.setattr(election, "elect", unclean)
    assert "lacks acknowledged messages" in _first_violation(range(0, 120))
