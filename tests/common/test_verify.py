"""The demo's pure checks: delivery comparison and the one-master-per-epoch rule."""

from hypothesis import given
from hypothesis import strategies as st

from orbitmq.common.verify import MasterChange, compare_delivery, epoch_conflicts


def test_lost_and_duplicated_are_reported():
    r = compare_delivery(["a", "b", "c"], ["a", "a", "c", "x"])
    assert r.lost == ["b"]
    assert r.duplicated == {"a": 2}
    assert r.delivered == 4 and r.acked == 3
    assert not r.ok


@given(st.lists(st.text(min_size=1, max_size=3), max_size=30), st.data())
def test_delivering_every_acked_id_is_ok(acked, data):
    extra = data.draw(st.lists(st.text(min_size=1, max_size=3), max_size=10))
    r = compare_delivery(acked, [*acked, *extra, *acked[:2]])
    assert r.ok and r.lost == []


def test_two_masters_in_one_epoch_is_a_conflict():
    ch = [MasterChange("s", 1, 1), MasterChange("s", 2, 2), MasterChange("s", 2, 3)]
    out = epoch_conflicts(ch)
    assert any("has masters 2 and 3" in p for p in out)


def test_failed_elections_and_other_sets_do_not_conflict():
    ch = [MasterChange("s", 1, 1), MasterChange("t", 1, 5), MasterChange("s", 2, -1), MasterChange("s", 3, 2)]
    assert epoch_conflicts(ch) == []


def test_epoch_going_backwards_is_reported():
    assert epoch_conflicts([MasterChange("s", 3, 1), MasterChange("s", 2, 2)])
