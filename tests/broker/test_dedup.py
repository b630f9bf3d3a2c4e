"""The pure dedup rules (broker/store/dedup.py): the recent-batches table and the match of a retry."""

from __future__ import annotations

from orbitmq.broker.store.dedup import RecentBatches, StoredRecord, is_candidate, match


def rec(off: int, mid: str, topic: str = "T", ms: int = 1000) -> StoredRecord:
    return StoredRecord(off, 10, 0, off // 10, topic, mid, ms)


def test_recent_batches_prune_and_cut() -> None:
    t = RecentBatches()
    for i in range(10):
        t.add(f"id{i}", i * 100)
    t.add("", 5000)  # no id: nothing to remember
    assert len(t) == 10 and t.get("id3") == 300
    t.prune(350)  # indexed below 350: the index answers for those
    assert t.get("id3") is None and t.get("id4") == 400 and len(t) == 6
    t.cut(700)  # truncated at 700
    assert t.get("id7") is None and t.get("id6") == 600 and len(t) == 3
    t.add("id4", 800)  # an id seen again later: the newest place wins, the old entry's prune keeps it
    t.prune(500)
    assert t.get("id4") == 800


def test_match_rules() -> None:
    stored = [rec(0, "a"), rec(10, "b"), rec(20, "c")]
    assert match(stored, "T", ["a", "b"], 0) == stored[:2]
    assert match(stored, "T", ["a", "b", "c"], 0) == stored
    assert match(stored, "T", ["a", "c"], 0) is None          # not the same sequence
    assert match(stored, "T", ["a", "b", "c", "d"], 0) is None  # longer than what is stored
    assert match(stored, "U", ["a"], 0) is None               # another topic
    assert match(stored, "T", ["a"], 1001) is None            # older than the window
    assert match([], "T", ["a"], 0) is None
    assert is_candidate(["a", "b"]) and not is_candidate(["a", ""]) and not is_candidate([])
