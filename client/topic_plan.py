"""Planning `admin topic update` (pure): from a topic's configs on the broker sets that hold it,
the config each target broker set gets.

Owns: extending a topic to more broker sets (a set without it gets the topic's current counts,
perm and order), raising queue counts, and refusing to lower them (the broker refuses too). Never:
I/O; client/admin.py reads the configs and sends the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    read_queues: int
    write_queues: int
    perm: int = 6
    order: bool = False


class TopicPlanError(ValueError):
    """The update cannot be planned (unknown topic without counts, or a decrease)."""


def plan_update(topic: str, existing: Mapping[str, TopicSpec], targets: Sequence[str], *,
                queues: int | None = None, read_queues: int | None = None, write_queues: int | None = None,
                perm: int | None = None, order: bool | None = None) -> dict[str, TopicSpec]:
    """The new config of every target broker set (default targets: the sets holding the topic)."""
    targets = sorted(set(targets) or set(existing))
    if not targets:
        raise TopicPlanError(f"topic {topic!r} is on no broker set; create it first (or name --broker-sets)")
    if existing:
        # the template for sets that do not have it yet: the largest counts any set has
        base = TopicSpec(max(s.read_queues for s in existing.values()), max(s.write_queues for s in existing.values()),
                         next(iter(existing.values())).perm, any(s.order for s in existing.values()))
    elif queues or (read_queues and write_queues):
        base = TopicSpec(read_queues or queues or 0, write_queues or queues or 0)
    else:
        raise TopicPlanError(f"topic {topic!r} does not exist yet: give --queues (or use `topic create`)")
    plan: dict[str, TopicSpec] = {}
    lowered: list[str] = []
    for bset in targets:
        cur = existing.get(bset, base)
        rq = read_queues or queues or cur.read_queues
        wq = write_queues or queues or cur.write_queues
        old = existing.get(bset)
        if old is not None:
            lowered += [f"{bset} {name} {o} -> {n}" for name, o, n in
                        (("read_queues", old.read_queues, rq), ("write_queues", old.write_queues, wq)) if n < o]
        plan[bset] = TopicSpec(rq, wq, cur.perm if perm is None else perm, cur.order if order is None else order)
    if lowered:
        raise TopicPlanError(f"topic {topic!r}: queue counts only grow online ({'; '.join(lowered)}): messages in "
                             "the queues above the new count would no longer be read; delete and re-create the "
                             "topic to shrink it")
    return plan
