"""`bench rolling`'s unavailability figure (bench/rolling.py `max_gap`, `per_kind`): the longest
time inside a step's window without an acknowledgement, edges included, per step kind."""

from __future__ import annotations

import itertools

from orbitmq.bench.rolling import max_gap, per_kind


def test_max_gap_examples_and_brute_force() -> None:
    assert max_gap([], 1.0, 3.0) == 2.0
    assert abs(max_gap([1.5, 2.0, 2.9], 1.0, 3.0) - 0.9) < 1e-9
    assert max_gap([0.5, 5.0], 1.0, 3.0) == 2.0                     # acks outside the window do not count
    pts = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    for acks in itertools.chain.from_iterable(itertools.combinations(pts, n) for n in range(0, 5)):
        for start, end in [(0.0, 3.0), (0.25, 2.75), (1.0, 1.2)]:
            got = max_gap(list(acks)[::-1], start, end)
            inside = sorted(a for a in acks if start < a < end)
            edges = [start, *inside, end]
            assert abs(got - max(b - a for a, b in zip(edges, edges[1:], strict=False))) < 1e-9
            assert 0 < got <= end - start + 1e-9


def test_per_kind_takes_the_worst_step_of_each_kind() -> None:
    steps = [{"kind": "follower", "started": 0.0, "healthy_s": 2.0},
             {"kind": "master", "started": 10.0, "healthy_s": 2.0},
             {"kind": "follower", "started": 20.0, "healthy_s": 2.0}]
    acks = [0.1 * i for i in range(300)]
    acks = [a for a in acks if not 10.55 < a < 10.85 and not 20.15 < a < 20.95]
    out = per_kind(steps, acks)
    assert out["follower"]["steps"] == 2 and abs(out["follower"]["max_unavailable_s"] - 0.9) < 0.011
    assert out["master"]["steps"] == 1 and abs(out["master"]["max_unavailable_s"] - 0.4) < 0.011
