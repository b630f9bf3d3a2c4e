"""The pure expiry rule: retention, the disk ratio, what is not yet safe, and replicas still reading."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orbitmq.broker.store.expiry import SegmentInfo, segments_to_expire


def _segs(n: int, size: int = 100) -> list[SegmentInfo]:
    return [SegmentInfo(i * size, (i + 1) * size, mtime=float(i), size=size) for i in range(n)]


def test_old_segments_go_but_never_the_active_one_nor_unsafe_ones():
    segs = _segs(5)
    assert segments_to_expire(segs, 1000.0, 10.0, 1, 100, 0.85, safe_end=500) == 4
    assert segments_to_expire(segs, 1000.0, 10.0, 1, 100, 0.85, safe_end=250) == 2


def test_a_reader_keeps_segments_past_retention_but_not_past_the_disk_ratio():
    segs = _segs(5)
    assert segments_to_expire(segs, 1000.0, 10.0, 1, 100, 0.85, safe_end=500, keep_from=150) == 1
    assert segments_to_expire(segs, 1000.0, 10.0, 1, 100, 0.85, safe_end=500, keep_from=0) == 0
    assert segments_to_expire(segs, 1000.0, 10.0, 95, 100, 0.85, safe_end=500, keep_from=0) >= 1


@given(n=st.integers(1, 8), keep=st.integers(0, 900), safe=st.integers(0, 900))
def test_nothing_a_reader_needs_goes_while_the_disk_has_room(n, keep, safe):
    segs = _segs(n)
    k = segments_to_expire(segs, 1000.0, 10.0, 1, 100, 0.85, safe_end=safe, keep_from=keep)
    assert k <= max(0, n - 1)
    assert all(seg.end <= keep and seg.end <= safe for seg in segs[:k])
