"""The controller's replicated state machine (pure core).

Owns: per broker set (cluster + broker set name) the replicas (id, addresses, learner flag,
registration check code), the next id to hand out, the master, its epoch, the sync-state-set
(SSS) and its epoch; the history of master changes; the controllers' gRPC addresses. Commands
are plain frozen dataclasses; `ControllerState.apply(cmd)` validates one deterministically and
either applies it whole or rejects it with a code and a reason, changing nothing.

Never: sockets, threads, clocks or randomness (time travels inside commands), and never any
liveness data: which brokers are alive is an input to the election function (election.py) on
the leader, whose *decision* is the replicated `ElectMaster` command.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orbitmq.controller.auth_state import AUTH_COMMANDS, AuthCommand, AuthState
from orbitmq.controller.refusals import Refusal

HISTORY_LIMIT = 2000   # master changes kept (oldest dropped first)

SetKey = tuple[str, str]   # (cluster, broker set name)


# ---- replicated data --------------------------------------------------------------------------------

@dataclass
class ReplicaRec:
    broker_id: int
    check_code: str = ""
    address: str = ""
    ha_address: str = ""
    learner: bool = False
    registered: bool = False   # RegisterBroker seen (ApplyBrokerId alone only reserves the id)


@dataclass
class BrokerSet:
    cluster: str
    name: str
    replicas: dict[int, ReplicaRec] = field(default_factory=dict)
    next_broker_id: int = 1
    master_id: int | None = None
    master_epoch: int = 0
    sss: frozenset[int] = frozenset()
    sss_epoch: int = 0
    had_master: bool = False   # some election succeeded since the set was (re)created

    def electable(self, broker_id: int) -> bool:
        r = self.replicas.get(broker_id)
        return r is not None and r.registered and not r.learner


@dataclass(frozen=True)
class MasterChange:
    cluster: str
    broker_set: str
    master_epoch: int
    master_id: int            # 0: the set lost its master and no candidate was found
    old_master_id: int
    reason: str
    time_ms: int
    old_master_last_heartbeat_ms: int
    sss: tuple[int, ...]


@dataclass(frozen=True)
class Result:
    ok: bool
    code: str = ""
    reason: str = ""
    broker_id: int = 0
    sss: tuple[int, ...] = ()
    sss_epoch: int = 0

    @staticmethod
    def reject(code: str, reason: str) -> Result:
        return Result(False, code, reason)


OK = Result(True)


# ---- commands ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ApplyBrokerId:
    cluster: str
    broker_set: str
    broker_id: int
    check_code: str


@dataclass(frozen=True)
class RegisterBroker:
    cluster: str
    broker_set: str
    broker_id: int
    address: str
    ha_address: str
    learner: bool
    check_code: str


@dataclass(frozen=True)
class AlterSyncStateSet:
    cluster: str
    broker_set: str
    master_id: int
    master_epoch: int
    new_sss: frozenset[int]
    sss_epoch: int


@dataclass(frozen=True)
class ElectMaster:
    """An election outcome decided on the leader. `master_id` 0 records that the set lost its
    master with no candidate. Valid only against `expected_master_epoch` (else stale)."""

    cluster: str
    broker_set: str
    expected_master_epoch: int
    master_id: int
    new_sss: frozenset[int]
    unclean: bool
    reason: str
    time_ms: int
    old_master_last_heartbeat_ms: int = 0


@dataclass(frozen=True)
class CleanBrokerData:
    cluster: str
    broker_set: str
    broker_ids: frozenset[int]   # empty: the whole set


@dataclass(frozen=True)
class RemoveReplica:
    """An operator decommissions one replica: it leaves the registry and the sync-state-set.
    `min_replicas` is the set's minimum replica rule as the leader's config says (-1: automatic,
    as the brokers' `ha_min_replicas`: 2 for a set of 3 or more replicas, else 1); it travels in
    the command so every node decides alike."""

    cluster: str
    broker_set: str
    broker_id: int
    min_replicas: int = -1


def required_replicas(min_replicas: int, replica_count: int) -> int:
    """In-sync replicas a send needs in a set of `replica_count` non-learner replicas (the
    brokers' ack policy: a fixed N, or automatically 2 for 3+ replicas, else 1)."""
    if min_replicas > 0:
        return min_replicas
    return 2 if replica_count >= 3 else 1


@dataclass(frozen=True)
class AnnounceNode:
    """A controller node that became Raft leader announces its gRPC address (and confirms its
    leadership with a committed entry before serving, as RocketMQ's empty entry)."""

    raft_address: str
    address: str


@dataclass(frozen=True)
class RetireNode:
    """A controller node is being removed from the Raft group (admin remove-node): its gRPC address
    leaves the list brokers and name servers are given, and the node itself, once it applies
    this, stops taking part in Raft. A later AnnounceNode of the same address (add-node) undoes it."""

    raft_address: str


Command = (ApplyBrokerId | RegisterBroker | AlterSyncStateSet | ElectMaster | CleanBrokerData | RemoveReplica
           | AnnounceNode | RetireNode | AuthCommand)


class InvariantViolation(AssertionError):
    """The state broke one of its own invariants (a bug in this module)."""


# ---- the state machine ------------------------------------------------------------------------------

class ControllerState:
    """Replicated state. Mutated only by `apply`; every mutation re-checks the invariants."""

    def __init__(self) -> None:
        self.sets: dict[SetKey, BrokerSet] = {}
        self.history: list[MasterChange] = []
        self.nodes: dict[str, str] = {}        # raft address -> gRPC address
        # master epoch of each set removed by CleanBrokerData: a re-created set continues from it,
        # so epochs only grow and no two masters of a set ever share an epoch
        self.retired_epochs: dict[SetKey, int] = {}
        self.retired_nodes: set[str] = set()   # raft addresses removed from the group (RetireNode)
        self.auth = AuthState()                # users and ACL policies (controller/auth_state.py)

    def __setstate__(self, d: dict) -> None:
        # snapshots written before membership changes / users existed lack these
        self.__dict__.update(d)
        self.__dict__.setdefault("retired_nodes", set())
        if "auth" not in d:
            self.auth = AuthState()

    # -- queries (read-only) --

    def get(self, cluster: str, broker_set: str) -> BrokerSet | None:
        return self.sets.get((cluster, broker_set))

    def next_broker_id(self, cluster: str, broker_set: str) -> int:
        bs = self.get(cluster, broker_set)
        return bs.next_broker_id if bs is not None else 1

    def history_of(self, cluster: str = "", broker_set: str = "", limit: int = 0) -> list[MasterChange]:
        out = [h for h in self.history if (not cluster or h.cluster == cluster)
               and (not broker_set or h.broker_set == broker_set)]
        return out[-limit:] if limit > 0 else out

    # -- commands --

    def apply(self, cmd: Command) -> Result:
        """Apply one command: whole, or not at all with a reason."""
        if isinstance(cmd, AUTH_COMMANDS):
            ok, code, reason = self.auth.apply(cmd)
            return Result(ok, code, reason)
        handler = {ApplyBrokerId: self._apply_broker_id, RegisterBroker: self._register,
                   AlterSyncStateSet: self._alter_sss, ElectMaster: self._elect,
                   CleanBrokerData: self._clean, RemoveReplica: self._remove_replica,
                   AnnounceNode: self._announce, RetireNode: self._retire}.get(type(cmd))
        if handler is None:
            return Result.reject(Refusal.BAD_REQUEST, f"unknown command {type(cmd).__name__}")
        result = handler(cmd)  # handlers validate everything before they mutate anything
        check_invariants(self)
        return result

    def _apply_broker_id(self, c: ApplyBrokerId) -> Result:
        if not c.cluster or not c.broker_set:
            return Result.reject(Refusal.BAD_REQUEST, "cluster and broker set names are required")
        if c.broker_id < 1:
            return Result.reject(Refusal.BROKER_ID_INVALID, f"broker id must be >= 1, got {c.broker_id}")
        if not c.check_code:
            return Result.reject(Refusal.BAD_REQUEST, "a check code is required")
        bs = self.get(c.cluster, c.broker_set)
        if bs is not None:
            r = bs.replicas.get(c.broker_id)
            if r is not None:
                if r.check_code == c.check_code:
                    return Result(True, broker_id=c.broker_id)   # the same broker applying again
                return Result.reject(Refusal.BROKER_ID_INVALID, f"broker id {c.broker_id} of {c.cluster}/{c.broker_set} "
                                     "belongs to another broker (check code differs); if this is that replica "
                                     "with a new, empty store, remove the old id first: `orbitmq admin controller "
                                     f"remove-replica {c.broker_set} --broker-id {c.broker_id}`")
        else:
            key = (c.cluster, c.broker_set)
            bs = self.sets[key] = BrokerSet(c.cluster, c.broker_set, master_epoch=self.retired_epochs.get(key, 0))
        bs.replicas[c.broker_id] = ReplicaRec(c.broker_id, c.check_code)
        bs.next_broker_id = max(bs.next_broker_id, c.broker_id + 1)
        return Result(True, broker_id=c.broker_id)

    def _register(self, c: RegisterBroker) -> Result:
        bs = self.get(c.cluster, c.broker_set)
        if bs is None:
            return Result.reject(Refusal.SET_NOT_FOUND, f"unknown broker set {c.cluster}/{c.broker_set}: apply for an id first")
        r = bs.replicas.get(c.broker_id)
        if r is None:
            return Result.reject(Refusal.BROKER_ID_INVALID, f"broker id {c.broker_id} was not applied for in "
                                 f"{c.cluster}/{c.broker_set}")
        if c.check_code and r.check_code != c.check_code:
            return Result.reject(Refusal.BROKER_ID_INVALID, f"broker id {c.broker_id} belongs to another broker "
                                 "(check code differs)")
        if not c.address:
            return Result.reject(Refusal.BAD_REQUEST, "address is required")
        if c.learner and bs.master_id == c.broker_id:
            return Result.reject(Refusal.ROLE_CONFLICT, f"broker {c.broker_id} is master of epoch {bs.master_epoch}; "
                                 "it cannot register as a learner")
        r.address, r.ha_address, r.learner, r.registered = c.address, c.ha_address, c.learner, True
        if c.learner and c.broker_id in bs.sss:
            bs.sss = bs.sss - {c.broker_id}
            bs.sss_epoch += 1
        return Result(True, broker_id=c.broker_id, sss=tuple(sorted(bs.sss)), sss_epoch=bs.sss_epoch)

    def _alter_sss(self, c: AlterSyncStateSet) -> Result:
        bs = self.get(c.cluster, c.broker_set)
        if bs is None:
            return Result.reject(Refusal.SET_NOT_FOUND, f"unknown broker set {c.cluster}/{c.broker_set}")
        cur = Result(False, sss=tuple(sorted(bs.sss)), sss_epoch=bs.sss_epoch)
        if bs.master_id is None or c.master_id != bs.master_id:
            return Result(False, Refusal.INVALID_MASTER, f"broker {c.master_id} is not the master "
                          f"(master: {bs.master_id or 'none'})", sss=cur.sss, sss_epoch=cur.sss_epoch)
        if c.master_epoch != bs.master_epoch:
            return Result(False, Refusal.FENCED_MASTER_EPOCH, f"master epoch {c.master_epoch} is not the current "
                          f"{bs.master_epoch}", sss=cur.sss, sss_epoch=cur.sss_epoch)
        if c.sss_epoch != bs.sss_epoch:
            return Result(False, Refusal.FENCED_SSS_EPOCH, f"sync-state-set epoch {c.sss_epoch} is not the current "
                          f"{bs.sss_epoch}", sss=cur.sss, sss_epoch=cur.sss_epoch)
        if bs.master_id not in c.new_sss:
            return Result(False, Refusal.MASTER_NOT_IN_SET, "the new sync-state-set must contain the master",
                          sss=cur.sss, sss_epoch=cur.sss_epoch)
        for b in sorted(c.new_sss):
            r = bs.replicas.get(b)
            if r is None or not r.registered:
                return Result(False, Refusal.UNKNOWN_BROKER, f"broker {b} is not registered in the set",
                              sss=cur.sss, sss_epoch=cur.sss_epoch)
            if r.learner:
                return Result(False, Refusal.LEARNER_IN_SET, f"broker {b} is a learner", sss=cur.sss,
                              sss_epoch=cur.sss_epoch)
        if c.new_sss == bs.sss:
            return Result(True, sss=cur.sss, sss_epoch=bs.sss_epoch)
        bs.sss = frozenset(c.new_sss)
        bs.sss_epoch += 1
        return Result(True, sss=tuple(sorted(bs.sss)), sss_epoch=bs.sss_epoch)

    def _elect(self, c: ElectMaster) -> Result:
        bs = self.get(c.cluster, c.broker_set)
        if bs is None:
            return Result.reject(Refusal.SET_NOT_FOUND, f"unknown broker set {c.cluster}/{c.broker_set}")
        if c.expected_master_epoch != bs.master_epoch:
            return Result.reject(Refusal.STALE_ELECTION, f"decided at master epoch {c.expected_master_epoch}, "
                                 f"now {bs.master_epoch}")
        old = bs.master_id or 0
        if c.master_id == 0:
            if bs.master_id is None:
                return Result.reject(Refusal.NO_CHANGE, "the set has no master already")
            bs.master_id = None
            bs.master_epoch += 1
            self._record(bs, 0, old, c)
            return Result(True, sss=tuple(sorted(bs.sss)), sss_epoch=bs.sss_epoch)
        if not bs.electable(c.master_id):
            r = bs.replicas.get(c.master_id)
            why = "a learner" if r is not None and r.learner else "not a registered replica"
            return Result.reject(Refusal.NOT_ELECTABLE, f"broker {c.master_id} is {why}")
        if c.master_id not in c.new_sss:
            return Result.reject(Refusal.MASTER_NOT_IN_SET, "the new sync-state-set must contain the new master")
        for b in c.new_sss:
            if not bs.electable(b):
                return Result.reject(Refusal.UNKNOWN_BROKER, f"broker {b} cannot be in the sync-state-set")
            if b != c.master_id and b not in bs.sss:
                return Result.reject(Refusal.NOT_IN_SET, f"broker {b} was not in the sync-state-set")
        if not c.unclean and bs.had_master and c.master_id not in bs.sss:
            return Result.reject(Refusal.NOT_IN_SET, f"broker {c.master_id} is not in the sync-state-set "
                                 "(unclean election is off)")
        bs.master_id = c.master_id
        bs.master_epoch += 1
        bs.had_master = True
        bs.sss = frozenset(c.new_sss)
        bs.sss_epoch += 1
        self._record(bs, c.master_id, old, c)
        return Result(True, broker_id=c.master_id, sss=tuple(sorted(bs.sss)), sss_epoch=bs.sss_epoch)

    def _record(self, bs: BrokerSet, master: int, old: int, c: ElectMaster) -> None:
        self.history.append(MasterChange(bs.cluster, bs.name, bs.master_epoch, master, old, c.reason, c.time_ms,
                                         c.old_master_last_heartbeat_ms, tuple(sorted(bs.sss))))
        if len(self.history) > HISTORY_LIMIT:
            del self.history[: len(self.history) - HISTORY_LIMIT]

    def _clean(self, c: CleanBrokerData) -> Result:
        bs = self.get(c.cluster, c.broker_set)
        if bs is None:
            return Result.reject(Refusal.SET_NOT_FOUND, f"unknown broker set {c.cluster}/{c.broker_set}")
        if not c.broker_ids:
            if bs.master_id is not None:
                return Result.reject(Refusal.IS_MASTER, f"broker {bs.master_id} is the master; the set is in use")
            self.retired_epochs[(c.cluster, c.broker_set)] = bs.master_epoch
            del self.sets[(c.cluster, c.broker_set)]
            return OK
        for b in sorted(c.broker_ids):
            if b not in bs.replicas:
                return Result.reject(Refusal.UNKNOWN_BROKER, f"broker {b} is not in {c.cluster}/{c.broker_set}")
        if bs.master_id is not None and bs.master_id in c.broker_ids:
            return Result.reject(Refusal.IS_MASTER, f"broker {bs.master_id} is the master; switch the master first")
        for b in c.broker_ids:
            del bs.replicas[b]
        if bs.sss & c.broker_ids:
            bs.sss = bs.sss - c.broker_ids
            bs.sss_epoch += 1
        return OK

    def _remove_replica(self, c: RemoveReplica) -> Result:
        bs = self.get(c.cluster, c.broker_set)
        if bs is None:
            return Result.reject(Refusal.SET_NOT_FOUND, f"unknown broker set {c.cluster}/{c.broker_set}")
        r = bs.replicas.get(c.broker_id)
        if r is None:
            return Result.reject(Refusal.UNKNOWN_BROKER, f"broker {c.broker_id} is not a replica of "
                                 f"{c.cluster}/{c.broker_set} (replicas: {sorted(bs.replicas)})")
        if bs.master_id == c.broker_id:
            others = sorted(b for b in bs.sss if b != c.broker_id)
            hint = (f"`orbitmq admin controller elect {c.broker_set} --broker-id {others[0]}`" if others
                    else "`orbitmq admin controller elect` once another replica is in sync")
            return Result.reject(Refusal.IS_MASTER, f"broker {c.broker_id} is the master of epoch {bs.master_epoch}; "
                                 f"hand mastership off first ({hint}, or stop it with SIGTERM, which hands off), "
                                 "then remove it")
        if not r.learner:
            count = sum(1 for x in bs.replicas.values() if not x.learner)
            need = required_replicas(c.min_replicas, count)
            if count - 1 < need:
                return Result.reject(Refusal.BELOW_MIN_REPLICAS, f"removing broker {c.broker_id} would leave "
                                     f"{count - 1} replica(s) in {c.cluster}/{c.broker_set}; every send must be "
                                     f"held by {need} (min in-sync replicas): add a replica first")
            left = bs.sss - {c.broker_id}
            if bs.master_id is not None and len(left) < need:
                return Result.reject(Refusal.BELOW_MIN_REPLICAS, f"removing broker {c.broker_id} would leave the "
                                     f"sync-state-set {sorted(left)} below the {need} in-sync replicas every send "
                                     "needs (sends would be refused): wait until another replica is in sync")
        del bs.replicas[c.broker_id]
        if c.broker_id in bs.sss:
            bs.sss = bs.sss - {c.broker_id}
            bs.sss_epoch += 1
        return Result(True, broker_id=c.broker_id, sss=tuple(sorted(bs.sss)), sss_epoch=bs.sss_epoch)

    def _announce(self, c: AnnounceNode) -> Result:
        if not c.raft_address or not c.address:
            return Result.reject(Refusal.BAD_REQUEST, "raft and gRPC addresses are required")
        self.nodes[c.raft_address] = c.address
        self.retired_nodes.discard(c.raft_address)
        return OK

    def _retire(self, c: RetireNode) -> Result:
        if not c.raft_address:
            return Result.reject(Refusal.BAD_REQUEST, "a raft address is required")
        self.nodes.pop(c.raft_address, None)
        self.retired_nodes.add(c.raft_address)
        return OK


def check_invariants(state: ControllerState) -> None:
    """Raise InvariantViolation if any per-set invariant does not hold."""
    for key, bs in state.sets.items():
        if key != (bs.cluster, bs.name):
            raise InvariantViolation(f"set stored under {key} is {bs.cluster}/{bs.name}")
        if bs.master_id is not None:
            if bs.master_id not in bs.sss:
                raise InvariantViolation(f"{key}: master {bs.master_id} not in its sync-state-set {sorted(bs.sss)}")
            if not bs.electable(bs.master_id):
                raise InvariantViolation(f"{key}: master {bs.master_id} is a learner or unregistered")
            if bs.master_epoch < 1:
                raise InvariantViolation(f"{key}: a master with epoch {bs.master_epoch}")
        for b in bs.sss:
            r = bs.replicas.get(b)
            if r is None or r.learner:
                raise InvariantViolation(f"{key}: sync-state-set member {b} is unknown or a learner")
        if bs.replicas and bs.next_broker_id <= max(bs.replicas):
            raise InvariantViolation(f"{key}: next id {bs.next_broker_id} not above {max(bs.replicas)}")
