"""The follower's reconnect wait (broker/ha/follower.py `retry_delay`): quick first retries (a new
master opens its HA port a few ms after its followers hear of it), doubling, capped."""

from __future__ import annotations

from orbitmq.broker.ha.follower import retry_delay


def test_retry_delay_starts_quick_doubles_and_is_capped() -> None:
    for cap in (0.05, 0.3, 1.0):
        delays = [retry_delay(n, cap) for n in range(1, 20)]
        assert delays[0] == min(cap, 0.01)
        assert all(b == min(cap, 2 * a) for a, b in zip(delays, delays[1:], strict=False))
        assert max(delays) == cap and all(d > 0 for d in delays)
