"""Who a master lets replicate from it (pure: no sockets, no clock; time is passed in).

Owns: the admission of a follower's HELLO on the replication port and the rule for a second
connection claiming an id that is already connected. A HELLO is refused (a REFUSE frame with
the code, then the master closes) when:
- a field is out of range: a broker id below 1 (the controller hands out ids from 1), a negative
  max offset, a negative epoch or epoch start (BAD_REQUEST);
- it claims the master's own id (BAD_REQUEST);
- the master has a cluster secret and the HELLO is not signed with it, is signed too far from
  the master's clock, or repeats a signature already used (NO_PERMISSION): a stranger cannot
  pull the commitlog, nor replay a captured HELLO;
- the master knows the controller's view of its broker set and the id is not a replica of it,
  or is a learner there but claims to be a full replica (NO_PERMISSION). A full replica saying
  it is a learner is let in as a learner: it only gives up counting in the sync-state-set.
A HELLO with an id that already has a connection does not replace it while that connection is
alive (`may_replace`): the newcomer is refused (BROKER_BUSY) unless the old connection has been
silent for `stale_after_s` (a live follower answers every heartbeat, so silence that long means
it is gone and the newcomer is its reconnection).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orbitmq.broker.ha import protocol as hp
from orbitmq.common import node_auth

HELLO_METHOD = "orbitmq.ha/HELLO"   # the "method" a HELLO signature names (node_auth.sign)
REPLAY_MEMORY = 4096                # signatures remembered (within the skew window)


@dataclass(frozen=True)
class Refusal:
    code: str       # an ErrorCode name: BAD_REQUEST, NO_PERMISSION, BROKER_BUSY
    message: str

    def frame(self) -> hp.Refuse:
        return hp.Refuse(self.code, self.message)


@dataclass
class ReplayGuard:
    """Signatures seen within the skew window; a second use of one is a replay."""

    window_ms: int = node_auth.MAX_SKEW_MS
    limit: int = REPLAY_MEMORY
    _seen: dict[str, int] = field(default_factory=dict)

    def first_use(self, signature: str, now_ms: int) -> bool:
        """True the first time `signature` is seen (it is remembered), False on a replay."""
        if len(self._seen) >= self.limit:
            cutoff = now_ms - 2 * self.window_ms
            self._seen = {s: t for s, t in self._seen.items() if t >= cutoff}
            while len(self._seen) >= self.limit:   # still full: forget the oldest
                self._seen.pop(next(iter(self._seen)))
        if signature in self._seen:
            return False
        self._seen[signature] = now_ms
        return True


@dataclass
class HelloPolicy:
    """What a master checks a HELLO against."""

    master_id: int
    secret: bytes | None = None                 # the cluster secret; None: HELLOs need no signature
    replicas: Mapping[int, bool] | None = None  # controller's view: replica id -> learner (None: unknown)
    replay: ReplayGuard = field(default_factory=ReplayGuard)
    max_skew_ms: int = node_auth.MAX_SKEW_MS


def sign_hello(hello: hp.Hello, secret: bytes, now_ms: int) -> hp.Hello:
    """`hello` with its cluster-secret signature."""
    auth = node_auth.sign(secret, HELLO_METHOD, hp.hello_signed_bytes(hello), now_ms)
    return hp.Hello(hello.broker_id, hello.learner, hello.max_offset, hello.epochs, auth)


def admit_hello(hello: hp.Hello, policy: HelloPolicy, now_ms: int) -> Refusal | None:
    """None if the HELLO may start a replication session, else why not."""
    if hello.broker_id < 1:
        return Refusal("BAD_REQUEST", f"broker id {hello.broker_id} is not a replica id (ids start at 1)")
    if hello.max_offset < 0:
        return Refusal("BAD_REQUEST", f"negative max offset {hello.max_offset}")
    for e in hello.epochs:
        if e.epoch < 0 or e.start_offset < 0:
            return Refusal("BAD_REQUEST", f"negative epoch entry ({e.epoch}, {e.start_offset})")
    if hello.broker_id == policy.master_id:
        return Refusal("BAD_REQUEST", f"broker id {hello.broker_id} is the master's")
    if policy.secret is not None:
        try:
            node_auth.verify(policy.secret, HELLO_METHOD, hp.hello_signed_bytes(hello), hello.auth or None,
                             now_ms, policy.max_skew_ms)
        except node_auth.NodeAuthError as e:
            return Refusal("NO_PERMISSION", f"replication HELLO from {hello.broker_id}: {e}")
        if not policy.replay.first_use(hello.auth, now_ms):
            return Refusal("NO_PERMISSION", f"replication HELLO from {hello.broker_id}: signature already used")
    if policy.replicas is not None:
        learner = policy.replicas.get(hello.broker_id)
        if learner is None:
            return Refusal("NO_PERMISSION", f"broker id {hello.broker_id} is not a replica of this broker set "
                           "in the controller's view (a new replica is let in once the controller lists it)")
        if learner and not hello.learner:
            return Refusal("NO_PERMISSION", f"broker {hello.broker_id} is a learner in the controller's view; "
                           "it cannot replicate as a full replica")
    return None


def may_replace(old_silent_s: float, stale_after_s: float) -> bool:
    """A second connection with a connected id replaces the first only if the first has been silent
    (nothing read from it) for `stale_after_s`."""
    return old_silent_s >= stale_after_s
