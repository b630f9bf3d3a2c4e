"""Shared secrets on disk: create one (random, owner-only) for a local cluster or a test."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_secret_file(path: str | Path) -> Path:
    """Write a new random secret to `path` (mode 0600) unless one is there already; return the path."""
    p = Path(path)
    if p.exists():
        return p
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return p
