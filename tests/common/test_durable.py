"""Durable file replacement: content replaced whole, no temp file left, removal idempotent."""

from __future__ import annotations

import os

from orbitmq.common.durable import fsync_dir, remove_file, replace_file


def test_replace_writes_whole_content_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "f"
    replace_file(p, "one")
    assert p.read_text() == "one"
    replace_file(p, b"\x00two" * 1000)
    assert p.read_bytes() == b"\x00two" * 1000
    assert sorted(os.listdir(p.parent)) == ["f"]
    fsync_dir(p.parent)


def test_a_stale_temp_file_from_a_crash_is_overwritten(tmp_path):
    p = tmp_path / "f"
    (tmp_path / "f.tmp").write_text("half written by a crashed writer")
    replace_file(p, "new")
    assert p.read_text() == "new" and not (tmp_path / "f.tmp").exists()


def test_remove_is_idempotent(tmp_path):
    p = tmp_path / "f"
    replace_file(p, "x")
    remove_file(p)
    remove_file(p)
    assert not p.exists()
