"""The broadcasting offset file: survives a reload, replaced atomically, rejects a corrupt file."""

from __future__ import annotations

import pytest

from orbitmq.client import errors
from orbitmq.client.offset_store import LocalOffsetStore
from orbitmq.client.routes import MessageQueue


def test_commit_flush_reload(tmp_path):
    path = tmp_path / "sub" / "g@i.json"
    s = LocalOffsetStore(path)
    q0, q1 = MessageQueue("T", "bs1", 0), MessageQueue("T", "bs2", 3)
    assert s.read(q0) is None
    s.commit(q0, 10)
    s.commit(q1, 7)
    assert not path.exists()          # commit is in memory until flush
    s.flush()
    s.commit(q0, 12)
    s.flush()
    again = LocalOffsetStore(path)
    assert again.read(q0) == 12 and again.read(q1) == 7
    assert not path.with_suffix(".json.tmp").exists()


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(errors.BadRequestError, match="unreadable"):
        LocalOffsetStore(path)
    assert path.read_text() == "{not json"   # left as it was
