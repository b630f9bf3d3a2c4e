"""Controller group membership rules (pure): which addresses brokers and name servers are given,
which member an admin's address names, whether an add or a remove may go ahead, and when a
joining node has caught up enough to take part in elections.

Owns: these decisions only. Never: sockets, threads, clocks or Raft; the shell
(controller/server.py over controller/raft.py's pysyncobj dynamic membership) asks and carries
out. Raft addresses identify members; `nodes` maps each announced member's Raft address to its
gRPC address (replicated, controller/state.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from orbitmq.controller.refusals import Refusal


def controller_list(members: Iterable[str], nodes: Mapping[str, str]) -> list[str]:
    """The gRPC addresses of every member, sorted; empty while any member's address is unknown
    (a partial list would make a client forget a live controller)."""
    out = []
    for raft in members:
        addr = nodes.get(raft, "")
        if not addr:
            return []
        out.append(addr)
    return sorted(set(out))


def resolve_member(target: str, members: Iterable[str], nodes: Mapping[str, str]) -> str | None:
    """The Raft address of the member `target` names (its Raft or its gRPC address), or None."""
    members = list(members)
    if target in members:
        return target
    for raft in members:
        if nodes.get(raft) == target:
            return raft
    return None


def check_add(raft_address: str, address: str, members: Iterable[str],
              nodes: Mapping[str, str]) -> tuple[Refusal, str] | None:
    """Why adding (raft_address, address) is refused, or None."""
    if not raft_address or not address:
        return Refusal.BAD_REQUEST, "the new node's raft and gRPC addresses are required"
    members = list(members)
    if raft_address in members:
        return Refusal.NODE_ALREADY_MEMBER, f"{raft_address} is a member already"
    for raft in members:
        if nodes.get(raft) == address:
            return Refusal.NODE_ALREADY_MEMBER, f"member {raft} already serves gRPC on {address}"
    return None


def check_remove(raft_address: str | None, target: str, members: Iterable[str]) -> tuple[Refusal, str] | None:
    """Why removing the member `raft_address` (resolved from `target`) is refused, or None."""
    members = list(members)
    if raft_address is None:
        return Refusal.NODE_NOT_MEMBER, f"no controller member has the address {target} (members: " \
                                        f"{', '.join(sorted(members))})"
    if len(members) <= 1:
        return Refusal.MEMBERSHIP_CHANGE_FAILED, "cannot remove the last member of the group"
    return None


def join_done(leader_known: bool, last_applied: int, leader_commit: int | None) -> bool:
    """A joining node (started empty with join=true) takes part in elections once it has heard
    from a leader and applied everything that leader had committed when it last told us."""
    return leader_known and leader_commit is not None and last_applied >= leader_commit > 0
