"""Consumer group membership from heartbeats: a pure core (time is passed in, no clocks or I/O).

Owns: which client ids are in which group, their subscriptions and consume model, and expiring
clients that stopped sending heartbeats. Clients use the sorted member list to rebalance queues.
Never persists anything: membership is rebuilt from heartbeats after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConsumerInfo:
    client_id: str
    subscriptions: dict[str, str]  # topic -> tag expression
    model: int  # ConsumeModel: 0 clustering, 1 broadcasting
    last_seen: float


@dataclass
class ConsumerGroups:
    """Members per group; a member expires `expire_s` after its last heartbeat."""

    expire_s: float = 120.0
    _groups: dict[str, dict[str, ConsumerInfo]] = field(default_factory=dict)

    def heartbeat(self, group: str, client_id: str, subscriptions: dict[str, str], model: int,
                  now: float) -> bool:
        """Record a heartbeat; returns True if the group's membership or subscriptions changed."""
        members = self._groups.setdefault(group, {})
        old = members.get(client_id)
        members[client_id] = ConsumerInfo(client_id, dict(subscriptions), model, now)
        return old is None or old.subscriptions != subscriptions or old.model != model

    def unregister(self, group: str, client_id: str) -> bool:
        members = self._groups.get(group)
        if not members or members.pop(client_id, None) is None:
            return False
        if not members:
            del self._groups[group]
        return True

    def expire(self, now: float) -> list[tuple[str, str]]:
        """Drop clients silent for more than expire_s; returns (group, client_id) of each."""
        gone = []
        for group, members in list(self._groups.items()):
            for cid, info in list(members.items()):
                if now - info.last_seen > self.expire_s:
                    del members[cid]
                    gone.append((group, cid))
            if not members:
                del self._groups[group]
        return gone

    def clients(self, group: str, now: float) -> list[str]:
        self.expire(now)
        return sorted(self._groups.get(group, {}))

    def members(self, group: str, now: float) -> list[ConsumerInfo]:
        self.expire(now)
        return [self._groups[group][c] for c in sorted(self._groups.get(group, {}))]

    def groups(self, now: float) -> list[str]:
        self.expire(now)
        return sorted(self._groups)
