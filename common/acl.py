"""Users and access policies in the style of RocketMQ 5's ACL 2.0, and the decision (pure).

- A `User` has an access key, a secret (kept as is: HMAC verification needs it) and an admin flag.
- A user's policy is a list of `Entry`s: a resource (`TOPIC:orders`, `TOPIC:orders-*` prefix,
  `TOPIC:*` any topic; `GROUP:...` likewise), actions (`pub`, `sub`, `create`, `admin`, or `all`)
  and a decision (`allow` / `deny`). One entry per resource: setting a resource again replaces it.
- `decide(snapshot, access_key, checks)`: an unknown user is denied; an admin user is allowed
  everything; otherwise every `Check` must pass, and a check passes only if some matching entry
  allows it and no matching entry denies it (deny wins; nothing matching = deny).
- Retry and dead-letter topics (`%RETRY%g`, `%DLQ%g`) are checked as `sub` on the group `g`:
  a consumer of `g` may read and write its own retries.
Never: I/O, clocks, or a decision taken on anything but the verified access key and the request.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

RETRY_PREFIX = "%RETRY%"
DLQ_PREFIX = "%DLQ%"
MAX_KEY_LEN = 128
MIN_SECRET_LEN = 8
MAX_SECRET_LEN = 256
MAX_NAME_LEN = 255


class ResourceType(enum.StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"


class Action(enum.StrEnum):
    PUB = "pub"
    SUB = "sub"
    CREATE = "create"
    ADMIN = "admin"
    ALL = "all"


class Decision(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class AclError(ValueError):
    """A user, resource or entry that is not valid (reason in words)."""


@dataclass(frozen=True)
class Resource:
    """`type` and `name`; a `prefix` resource matches every name starting with `name` ("" = any)."""

    type: ResourceType
    name: str
    prefix: bool = False

    def matches(self, rtype: ResourceType, name: str) -> bool:
        if rtype != self.type:
            return False
        return name.startswith(self.name) if self.prefix else name == self.name

    def __str__(self) -> str:
        return f"{self.type}:{self.name}{'*' if self.prefix else ''}"

    @staticmethod
    def parse(text: str) -> Resource:
        """`TOPIC:name`, `TOPIC:prefix*`, `TOPIC:*`, `GROUP:...` (type case-insensitive)."""
        rtype, sep, name = text.strip().partition(":")
        try:
            t = ResourceType(rtype.upper())
        except ValueError:
            raise AclError(f"resource {text[:80]!r}: type must be TOPIC or GROUP (TOPIC:name, GROUP:prefix*)") from None
        if not sep or not name:
            raise AclError(f"resource {text[:80]!r}: expected {t}:name, {t}:prefix* or {t}:*")
        prefix = name.endswith("*")
        base = name[:-1] if prefix else name
        if "*" in base:
            raise AclError(f"resource {text[:80]!r}: '*' is allowed only at the end")
        if len(base) > MAX_NAME_LEN or any(c.isspace() or c == "," for c in base):
            raise AclError(f"resource {text[:80]!r}: bad name (no spaces or commas, at most {MAX_NAME_LEN})")
        return Resource(t, base, prefix)


@dataclass(frozen=True)
class Entry:
    resource: Resource
    actions: frozenset[Action]
    decision: Decision

    def covers(self, action: Action) -> bool:
        return Action.ALL in self.actions or action in self.actions


@dataclass(frozen=True)
class User:
    access_key: str
    secret: str
    admin: bool = False


@dataclass(frozen=True)
class Check:
    """One thing a request needs: `action` on resource `type`:`name`."""

    type: ResourceType
    name: str
    action: Action


@dataclass(frozen=True)
class Snapshot:
    """Every user and policy, as replicated by the controllers; `version` grows with each change."""

    users: Mapping[str, User] = field(default_factory=dict)
    policies: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    version: int = 0

    def secret_of(self, access_key: str) -> str | None:
        u = self.users.get(access_key)
        return None if u is None else u.secret


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


def parse_actions(text: str | Iterable[str]) -> frozenset[Action]:
    items = text.split(",") if isinstance(text, str) else list(text)
    out = set()
    for a in items:
        a = a.strip().lower()
        if not a:
            continue
        try:
            out.add(Action(a))
        except ValueError:
            raise AclError(f"unknown action {a[:40]!r} (pub, sub, create, admin, all)") from None
    if not out:
        raise AclError("at least one action is needed (pub, sub, create, admin, all)")
    return frozenset(out)


def check_access_key(ak: str) -> None:
    if not ak or len(ak) > MAX_KEY_LEN or not all(c.isalnum() or c in "-_." for c in ak):
        raise AclError(f"access key {ak[:80]!r}: 1-{MAX_KEY_LEN} characters of letters, digits, '-', '_', '.'")


def check_user(u: User) -> None:
    check_access_key(u.access_key)
    if not MIN_SECRET_LEN <= len(u.secret) <= MAX_SECRET_LEN or any(c.isspace() for c in u.secret):
        raise AclError(f"secret of {u.access_key}: {MIN_SECRET_LEN}-{MAX_SECRET_LEN} characters, no spaces")


def normalize(check: Check) -> Check:
    """Retry / dead-letter topics of a group are checked as `sub` on that group."""
    if check.type == ResourceType.TOPIC:
        for p in (RETRY_PREFIX, DLQ_PREFIX):
            if check.name.startswith(p) and len(check.name) > len(p):
                return Check(ResourceType.GROUP, check.name[len(p):], Action.SUB)
    if check.type == ResourceType.GROUP and check.name.startswith(RETRY_PREFIX):
        return Check(ResourceType.GROUP, check.name[len(RETRY_PREFIX):], check.action)
    return check


def check_one(entries: Iterable[Entry], check: Check) -> Verdict:
    c = normalize(check)
    allowed = False
    for e in entries:
        if e.resource.matches(c.type, c.name) and e.covers(c.action):
            if e.decision == Decision.DENY:
                return Verdict(False, f"denied {c.action} on {c.type}:{c.name} by the entry for {e.resource}")
            allowed = True
    if not allowed:
        return Verdict(False, f"no policy allows {c.action} on {c.type}:{c.name}")
    return Verdict(True)


def decide(snapshot: Snapshot, access_key: str, checks: Iterable[Check], admin_only: bool = False) -> Verdict:
    """May `access_key` do what `checks` list (every one)? `admin_only`: only admin users may."""
    user = snapshot.users.get(access_key)
    if user is None:
        return Verdict(False, f"unknown user {access_key[:64]!r}")
    if user.admin:
        return Verdict(True)
    if admin_only:
        return Verdict(False, f"user {access_key} is not an admin user")
    entries = snapshot.policies.get(access_key, ())
    for c in checks:
        v = check_one(entries, c)
        if not v.allowed:
            return Verdict(False, f"user {access_key}: {v.reason}")
    return Verdict(True)
