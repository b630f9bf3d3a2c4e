"""Users and ACL policies as replicated controller state (pure: part of `ControllerState`).

Commands are frozen dataclasses of plain strings, applied in Raft log order on every controller
node; `AuthState.apply` validates with `common/acl.py` and changes everything or nothing. Secrets
are stored as given (brokers and proxies need them to verify HMAC signatures), so the controller's
Raft journal and snapshots hold them: keep `data_dir` private; the Raft links are encrypted with
the Raft secret. `version` grows with every change, so a cache asks "anything newer than N?".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orbitmq.common import acl
from orbitmq.controller.refusals import Refusal


@dataclass(frozen=True)
class UpsertUser:
    """Create or update a user; `only_if_absent`: leave an existing one unchanged (bootstrap)."""

    access_key: str
    secret: str
    admin: bool
    only_if_absent: bool = False


@dataclass(frozen=True)
class DeleteUser:
    """Delete a user and its policy."""

    access_key: str


@dataclass(frozen=True)
class SetAclEntry:
    """Set the entry for one resource of a user's policy (replacing the one it had)."""

    access_key: str
    resource: str
    actions: tuple[str, ...]
    decision: str


@dataclass(frozen=True)
class DeleteAcl:
    """Delete one resource's entry of a user's policy, or (resource "") the whole policy."""

    access_key: str
    resource: str = ""


AuthCommand = UpsertUser | DeleteUser | SetAclEntry | DeleteAcl
AUTH_COMMANDS = (UpsertUser, DeleteUser, SetAclEntry, DeleteAcl)


@dataclass
class AuthState:
    users: dict[str, tuple[str, bool]] = field(default_factory=dict)         # ak -> (secret, admin)
    acls: dict[str, dict[str, tuple[tuple[str, ...], str]]] = field(default_factory=dict)  # ak -> res -> entry
    version: int = 0

    def apply(self, c: AuthCommand) -> tuple[bool, str, str]:
        """(ok, refusal code, reason)."""
        try:
            if isinstance(c, UpsertUser):
                acl.check_user(acl.User(c.access_key, c.secret, c.admin))
                if c.only_if_absent and c.access_key in self.users:
                    return True, "", "exists"
                self.users[c.access_key] = (c.secret, bool(c.admin))
            elif isinstance(c, DeleteUser):
                if c.access_key not in self.users:
                    return False, Refusal.USER_NOT_FOUND, f"no user {c.access_key[:64]!r}"
                del self.users[c.access_key]
                self.acls.pop(c.access_key, None)
            elif isinstance(c, SetAclEntry):
                if c.access_key not in self.users:
                    return False, Refusal.USER_NOT_FOUND, f"no user {c.access_key[:64]!r}: create it first"
                res = acl.Resource.parse(c.resource)
                actions = acl.parse_actions(c.actions)
                decision = acl.Decision(c.decision.strip().lower())
                self.acls.setdefault(c.access_key, {})[str(res)] = (tuple(sorted(actions)), decision.value)
            elif isinstance(c, DeleteAcl):
                pol = self.acls.get(c.access_key)
                if not c.resource:
                    if not pol:
                        return False, Refusal.ACL_NOT_FOUND, f"user {c.access_key[:64]!r} has no policy"
                    del self.acls[c.access_key]
                else:
                    key = str(acl.Resource.parse(c.resource))
                    if not pol or key not in pol:
                        return False, Refusal.ACL_NOT_FOUND, f"user {c.access_key[:64]!r} has no entry for {key}"
                    del pol[key]
                    if not pol:
                        del self.acls[c.access_key]
            else:
                return False, Refusal.BAD_REQUEST, f"unknown command {type(c).__name__}"
        except (acl.AclError, ValueError) as e:
            return False, Refusal.BAD_REQUEST, str(e)
        self.version += 1
        return True, "", ""

    def snapshot(self) -> acl.Snapshot:
        users = {ak: acl.User(ak, s, a) for ak, (s, a) in self.users.items()}
        policies = {ak: tuple(entry(r, acts, d) for r, (acts, d) in sorted(pol.items()))
                    for ak, pol in self.acls.items()}
        return acl.Snapshot(users, policies, self.version)


def entry(resource: str, actions: tuple[str, ...], decision: str) -> acl.Entry:
    return acl.Entry(acl.Resource.parse(resource), acl.parse_actions(actions), acl.Decision(decision))
