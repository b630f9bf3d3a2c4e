"""Epoch file (real files, fsync) and the epoch comparison over generated replica histories."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.broker.ha.epoch_file import (
    EpochEntry,
    EpochFile,
    EpochFileError,
    EpochOrderError,
    append_entry,
    decode,
    encode,
    truncate_entries,
)
from orbitmq.broker.ha.epoch_truncation import epoch_at, find_truncation_point


def test_empty_list_is_persisted(tmp_path):
    f = EpochFile(tmp_path / "epochs")
    f.append(1, 0)
    f.append(3, 100)
    assert EpochFile(tmp_path / "epochs").entries == [EpochEntry(1, 0), EpochEntry(3, 100)]
    f.truncate(0)
    assert f.entries == []
    assert (tmp_path / "epochs").exists()
    assert EpochFile(tmp_path / "epochs").entries == []


def test_ordering_rules(tmp_path):
    f = EpochFile(tmp_path / "epochs")
    f.append(2, 10)
    f.append(2, 10)  # same entry again: no-op
    with pytest.raises(EpochOrderError):
        f.append(2, 11)
    with pytest.raises(EpochOrderError):
        f.append(1, 20)
    with pytest.raises(EpochOrderError):
        f.append(3, 5)
    f.append(3, 10)  # an empty epoch 2 is allowed
    assert f.entries == [EpochEntry(2, 10), EpochEntry(3, 10)]


def test_corrupt_file_gives_clear_error_and_keeps_bytes(tmp_path):
    p = tmp_path / "epochs"
    EpochFile(p).append(1, 0)
    good = p.read_bytes()
    p.write_bytes(good.replace(b"1 0", b"1 7"))
    with pytest.raises(EpochFileError, match="CRC"):
        EpochFile(p)
    p.write_bytes(b"garbage\n")
    with pytest.raises(EpochFileError, match="header"):
        EpochFile(p)
    assert p.read_bytes() == b"garbage\n"  # never rewritten by a failed load


def test_leftover_temp_file_is_ignored(tmp_path):
    p = tmp_path / "epochs"
    EpochFile(p).append(4, 50)
    (tmp_path / "epochs.tmp").write_bytes(b"half written")
    assert EpochFile(p).entries == [EpochEntry(4, 50)]
    assert not (tmp_path / "epochs.tmp").exists()


entries_st = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 50)), max_size=8).map(
    lambda steps: _build(steps))


def _build(steps):
    out, e, o = [], 0, 0
    for de, do in steps:
        e += de
        o += do
        out.append(EpochEntry(e, o))
    return out


@given(entries_st)
def test_codec_roundtrip(entries):
    assert decode(encode(entries)) == entries


@given(entries_st, st.integers(0, 500))
def test_truncate_entries_keeps_only_epochs_starting_before_the_cut(entries, cut):
    kept = truncate_entries(entries, cut)
    assert kept == entries[:len(kept)]
    assert all(e.start_offset < cut for e in kept)
    assert all(e.start_offset >= cut for e in entries[len(kept):])


# ---- the comparison over simulated histories ---------------------------------------------------
# A replica's log is a list of records tagged (epoch, n); an elected replica opens a new epoch at
# its end; a follower syncs with any other replica by the handshake rule and copies a prefix of
# what follows, adding epoch entries from the frames' (epoch, epoch_start) as the shell does.

class Replica:
    def __init__(self) -> None:
        self.log: list[tuple[int, int]] = []
        self.epochs: list[EpochEntry] = []


def lcp(a, b) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def check_epochs_describe_log(r: Replica) -> None:
    for i, (epoch, _) in enumerate(r.log):
        entry = epoch_at(r.epochs, i)
        assert entry is not None and entry.epoch == epoch, (i, r.epochs, r.log)


op_st = st.one_of(
    st.tuples(st.just("elect"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("write"), st.integers(0, 3), st.integers(1, 5)),
    st.tuples(st.just("sync"), st.tuples(st.integers(0, 3), st.integers(0, 3)), st.integers(0, 12)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(op_st, max_size=40))
def test_truncation_point_is_the_longest_common_prefix(ops):
    replicas = [Replica() for _ in range(4)]
    epoch = 0
    master_of: dict[int, int] = {}
    seq = 0
    for kind, who, n in ops:
        if kind == "elect":
            epoch += 1
            r = replicas[who]
            r.epochs = append_entry(r.epochs, epoch, len(r.log))
            master_of[epoch] = who
        elif kind == "write":
            # the master of the newest epoch whose master still holds that epoch writes
            if not master_of:
                continue
            e = max(master_of)
            m = replicas[master_of[e]]
            if not m.epochs or m.epochs[-1].epoch != e:
                continue
            for _ in range(n):
                seq += 1
                m.log.append((e, seq))
        else:
            src, dst = who
            if src == dst:
                continue
            s, f = replicas[src], replicas[dst]
            point = find_truncation_point(s.epochs, len(s.log), f.epochs, len(f.log))
            assert point.offset == lcp(s.log, f.log), (s.epochs, s.log, f.epochs, f.log)
            f.log = f.log[:point.offset]
            f.epochs = truncate_entries(f.epochs, point.offset)
            check_epochs_describe_log(f)
            for i in range(point.offset, min(len(s.log), point.offset + n)):
                rec = s.log[i]
                src_entry = epoch_at(s.epochs, i)
                assert src_entry is not None and src_entry.epoch == rec[0]
                if not f.epochs or f.epochs[-1].epoch != rec[0]:
                    f.epochs = append_entry(f.epochs, src_entry.epoch, src_entry.start_offset)
                f.log.append(rec)
            check_epochs_describe_log(f)
    for r in replicas:
        check_epochs_describe_log(r)


def test_divergent_tail_of_old_master_is_cut():
    # old master (epoch 2) wrote 100..150 that nobody copied; the new master (epoch 3) started at 100
    old = [EpochEntry(1, 0), EpochEntry(2, 40)]
    new = [EpochEntry(1, 0), EpochEntry(2, 40), EpochEntry(3, 100)]
    p = find_truncation_point(new, 180, old, 150)
    assert (p.offset, p.common_epoch) == (100, 2)
    # a follower that never saw epoch 2 but has all of epoch 1
    p = find_truncation_point(new, 180, [EpochEntry(1, 0)], 40)
    assert (p.offset, p.common_epoch) == (40, 1)
    # nothing in common: start from scratch
    assert find_truncation_point(new, 180, [EpochEntry(9, 0)], 10).offset == 0
    assert find_truncation_point(new, 180, [], 0).offset == 0
