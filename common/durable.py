"""Durable small-file writes: replace a file atomically and durably, remove one durably.

Owns: the one way a file is replaced: write a temporary file next to it, fsync it, rename it over
the target, fsync the directory, so a crash leaves the old or the new content, never a mix or
nothing. Used by the epoch file, the broker's controller identity and the client's offset file.
Never: partial writes in place, or a rename without the directory fsync.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the directory entry changes (create, rename, unlink) in `path` durable."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Replace `path` with `data` (str is UTF-8 encoded): temp file, fsync, rename, fsync dir.
    Creates the parent directory if needed."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(raw)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    fsync_dir(p.parent)


def remove_file(path: str | os.PathLike[str]) -> None:
    """Remove `path` (if present) and make the removal durable."""
    p = Path(path)
    with contextlib.suppress(FileNotFoundError):
        p.unlink()
        fsync_dir(p.parent)
