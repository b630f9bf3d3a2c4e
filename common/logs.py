"""Structured logging: `key=value` lines, one setup call per process."""

from __future__ import annotations

import logging
import sys


def setup(process: str, level: str = "INFO") -> None:
    """Configure the root logger for one OrbitMQ process (call once, from its CLI entry)."""
    fmt = f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s"
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=fmt, stream=sys.stderr, force=True)


def kv(**fields: object) -> str:
    """Render fields as `k=v` pairs for a log message (broker set, id and epoch on HA events)."""
    return " ".join(f"{k}={v}" for k, v in fields.items())
