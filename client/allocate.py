"""Queue allocation among the members of a consumer group: a pure function (RocketMQ's
"average" strategy). Every member computes the same answer from the same sorted inputs, so the
queues are divided without coordination. It never talks to a broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

Q = TypeVar("Q")


def allocate_averagely(client_id: str, members: Sequence[str], queues: Sequence[Q]) -> list[Q]:
    """The contiguous slice of sorted `queues` owned by `client_id` among sorted `members`.

    With n queues and m members each member gets n // m queues and the first n % m members one
    more; a member not in the list (not yet seen by the broker) gets nothing.
    """
    mems = sorted(set(members))
    qs = sorted(queues)
    if client_id not in mems or not qs:
        return []
    index = mems.index(client_id)
    n, m = len(qs), len(mems)
    if n <= m:
        return [qs[index]] if index < n else []
    base, extra = divmod(n, m)
    size = base + (1 if index < extra else 0)
    start = index * base + min(index, extra)
    return qs[start:start + size]
