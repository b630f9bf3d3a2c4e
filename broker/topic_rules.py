"""Rules for changing a topic's config on a broker (pure): queue counts only grow online.

Owns: whether an update of an existing topic may go ahead. Lowering a read queue count would hide
every message stored in the queues above it from consumers, and lowering a write queue count
changes where keyed (ordered) sends land, so both are refused with a reason rather than applied
silently; raising them is always allowed (new queues start empty). Never: I/O.
"""

from __future__ import annotations

from typing import Any


def queue_change_refusal(old: Any | None, new: Any) -> str | None:
    """Why `new` (a TopicConfig) may not replace `old` (None: a new topic), or None."""
    if old is None:
        return None
    lower = [f"{name} {getattr(old, name)} -> {getattr(new, name)}" for name in ("read_queues", "write_queues")
             if getattr(new, name) < getattr(old, name)]
    if not lower:
        return None
    return (f"topic {new.topic!r}: queue counts only grow online ({', '.join(lower)} refused): messages in the "
            "queues above the new count would no longer be read; delete and re-create the topic to shrink it")
