"""The controller's pure core: state machine validation, election policy, and invariants over
random command sequences (hypothesis stateful tests)."""

from __future__ import annotations

import copy
import pickle

from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from orbitmq.controller import election as el
from orbitmq.controller import state as st
from orbitmq.controller.leader_scan import Elect, LeaderScan, ScanSettings
from orbitmq.controller.liveness import Liveness

C = "c1"


def _state_dict(s: st.ControllerState) -> dict:
    return copy.deepcopy(vars(s))


def _setup(n: int = 3, learners: tuple[int, ...] = ()) -> st.ControllerState:
    s = st.ControllerState()
    for b in range(1, n + 1):
        assert s.apply(st.ApplyBrokerId(C, "s", b, f"code{b}")).ok
        assert s.apply(st.RegisterBroker(C, "s", b, f"127.0.0.1:{1000 + b}", f"127.0.0.1:{2000 + b}",
                                         b in learners, f"code{b}")).ok
    return s


def _elect(s: st.ControllerState, alive: dict[int, el.Live], unclean: bool = False, preferred: int = 0,
           designate: bool = False) -> tuple[st.Result, el.Decision]:
    bs = s.get(C, "s")
    d = el.elect(bs, alive, preferred=preferred, designate=designate, unclean_enabled=unclean)
    if d.code:
        return st.Result.reject(d.code, d.reason), d
    return s.apply(st.ElectMaster(C, "s", bs.master_epoch, d.master_id, d.sss, d.unclean, d.reason, 1)), d


# ---- ids and registration ---------------------------------------------------------------------------

def test_broker_ids_are_unique_and_kept_by_check_code():
    s = st.ControllerState()
    assert s.next_broker_id(C, "s") == 1
    assert s.apply(st.ApplyBrokerId(C, "s", 1, "a")).ok
    assert s.next_broker_id(C, "s") == 2
    r = s.apply(st.ApplyBrokerId(C, "s", 1, "b"))     # another broker wants id 1
    assert not r.ok and r.code == "BROKER_ID_INVALID"
    assert s.apply(st.ApplyBrokerId(C, "s", 1, "a")).ok  # the same broker restarting
    assert s.apply(st.ApplyBrokerId(C, "s", 5, "c")).ok  # any unassigned id
    assert s.next_broker_id(C, "s") == 6
    assert not s.apply(st.ApplyBrokerId(C, "s", 0, "d")).ok
    assert not s.apply(st.ApplyBrokerId(C, "s", 2, "")).ok


def test_register_needs_an_applied_id_and_the_check_code():
    s = st.ControllerState()
    assert s.apply(st.RegisterBroker(C, "s", 1, "a:1", "", False, "x")).code == "SET_NOT_FOUND"
    s.apply(st.ApplyBrokerId(C, "s", 1, "x"))
    assert s.apply(st.RegisterBroker(C, "s", 2, "a:1", "", False, "x")).code == "BROKER_ID_INVALID"
    assert s.apply(st.RegisterBroker(C, "s", 1, "a:1", "", False, "y")).code == "BROKER_ID_INVALID"
    assert s.apply(st.RegisterBroker(C, "s", 1, "a:1", "h:1", False, "x")).ok
    assert s.get(C, "s").replicas[1].ha_address == "h:1"


# ---- sync-state-set ---------------------------------------------------------------------------------

def test_alter_sync_state_set_rules():
    s = _setup(4, learners=(4,))
    r, d = _elect(s, {1: el.Live(), 2: el.Live(), 3: el.Live()})
    assert r.ok and d.master_id == 1
    bs = s.get(C, "s")
    assert bs.master_epoch == 1 and bs.sss == {1}
    before = _state_dict(s)
    bad = [
        (st.AlterSyncStateSet(C, "s", 2, 1, frozenset({1, 2}), 1), "INVALID_MASTER"),
        (st.AlterSyncStateSet(C, "s", 1, 0, frozenset({1, 2}), 1), "FENCED_MASTER_EPOCH"),
        (st.AlterSyncStateSet(C, "s", 1, 1, frozenset({1, 2}), 0), "FENCED_SSS_EPOCH"),
        (st.AlterSyncStateSet(C, "s", 1, 1, frozenset({2, 3}), 1), "MASTER_NOT_IN_SET"),
        (st.AlterSyncStateSet(C, "s", 1, 1, frozenset({1, 4}), 1), "LEARNER_IN_SET"),
        (st.AlterSyncStateSet(C, "s", 1, 1, frozenset({1, 9}), 1), "UNKNOWN_BROKER"),
        (st.AlterSyncStateSet(C, "x", 1, 1, frozenset({1}), 1), "SET_NOT_FOUND"),
    ]
    for cmd, code in bad:
        r = s.apply(cmd)
        assert not r.ok and r.code == code, (cmd, r)
        assert _state_dict(s) == before
    r = s.apply(st.AlterSyncStateSet(C, "s", 1, 1, frozenset({1, 2, 3}), 1))
    assert r.ok and r.sss == (1, 2, 3) and r.sss_epoch == 2


# ---- elections --------------------------------------------------------------------------------------

def test_ranking_epoch_then_offset_then_priority_then_id_without_overflow():
    s = _setup(4)
    assert _elect(s, {1: el.Live()})[0].ok
    s.apply(st.AlterSyncStateSet(C, "s", 1, 1, frozenset({1, 2, 3, 4}), 1))
    big = 1 << 40   # offsets that differ by more than 2 GiB (RocketMQ's int cast gets this wrong)
    alive = {2: el.Live(epoch=1, max_offset=big), 3: el.Live(epoch=1, max_offset=big + (3 << 31)),
             4: el.Live(epoch=0, max_offset=big * 4)}
    r, d = _elect(s, alive)
    assert r.ok and d.master_id == 3          # same epoch, larger offset; epoch beats offset (4)
    assert s.get(C, "s").sss == {2, 3, 4}     # the old set's live members stay
    bs = s.get(C, "s")
    tie = {2: el.Live(1, 5, priority=1), 4: el.Live(1, 5, priority=1)}
    assert el.elect(bs, tie).code == ""       # master 3 absent from `tie`: it is dead
    assert el.elect(bs, tie).master_id == 2   # full tie: the lower id
    assert el.elect(bs, {2: el.Live(1, 5, priority=2), 4: el.Live(1, 5, priority=1)}).master_id == 4


def test_manual_switch_and_master_alive():
    s = _setup(3)
    _elect(s, {1: el.Live(), 2: el.Live(), 3: el.Live()})
    s.apply(st.AlterSyncStateSet(C, "s", 1, 1, frozenset({1, 2}), 1))
    alive = {1: el.Live(1, 10), 2: el.Live(1, 10), 3: el.Live(1, 99)}
    assert el.elect(s.get(C, "s"), alive).code == "MASTER_ALIVE"
    assert el.elect(s.get(C, "s"), alive, preferred=3, designate=True).code == "NOT_CANDIDATE"  # not in SSS
    r, d = _elect(s, alive, preferred=2, designate=True)
    assert r.ok and d.master_id == 2 and s.get(C, "s").sss == {1, 2}   # the live old master stays in
    assert s.get(C, "s").master_epoch == 2


def test_learners_are_never_elected_not_even_first_or_unclean():
    s = _setup(3, learners=(3,))
    r, d = _elect(s, {3: el.Live(5, 10**12)}, unclean=True)
    assert not r.ok and d.code == "NO_CANDIDATE" and s.get(C, "s").master_id is None
    _elect(s, {1: el.Live(), 3: el.Live()})
    assert s.get(C, "s").master_id == 1
    r, d = _elect(s, {2: el.Live(), 3: el.Live(9, 10**12)}, unclean=True)   # 1 died; 2 outside the SSS
    assert r.ok and d.master_id == 2 and d.unclean and s.get(C, "s").sss == {2}
    r = s.apply(st.ElectMaster(C, "s", 2, 3, frozenset({3}), True, "forced", 1))
    assert not r.ok and r.code == "NOT_ELECTABLE"


def test_unclean_off_leaves_the_set_without_master_and_says_so():
    s = _setup(3)
    _elect(s, {1: el.Live(), 2: el.Live(), 3: el.Live()})   # SSS = {1}
    d = el.elect(s.get(C, "s"), {2: el.Live(), 3: el.Live()})
    assert d.master_id == 0 and d.code == "NO_CANDIDATE" and "unclean election is off" in d.reason
    r = s.apply(st.ElectMaster(C, "s", 1, 0, frozenset(), False, "master 1 lost", 1))
    assert r.ok and s.get(C, "s").master_id is None and s.get(C, "s").master_epoch == 2
    assert s.get(C, "s").sss == {1}                       # kept: 1 may come back
    assert s.history[-1].master_id == 0
    r = s.apply(st.ElectMaster(C, "s", 2, 2, frozenset({2}), False, "x", 1))
    assert not r.ok and r.code == "NOT_IN_SET"
    r, d = _elect(s, {1: el.Live(1, 0)})                  # the old master returns
    assert r.ok and d.master_id == 1 and s.get(C, "s").master_epoch == 3


def test_stale_election_is_rejected():
    s = _setup(2)
    _elect(s, {1: el.Live(), 2: el.Live()})
    r = s.apply(st.ElectMaster(C, "s", 0, 2, frozenset({2}), False, "late", 1))
    assert not r.ok and r.code == "STALE_ELECTION"


def test_clean_keeps_epochs_growing():
    s = _setup(2)
    _elect(s, {1: el.Live(), 2: el.Live()})
    assert s.apply(st.CleanBrokerData(C, "s", frozenset())).code == "IS_MASTER"
    s.apply(st.ElectMaster(C, "s", 1, 0, frozenset(), False, "lost", 1))
    assert s.apply(st.CleanBrokerData(C, "s", frozenset({9}))).code == "UNKNOWN_BROKER"
    assert s.apply(st.CleanBrokerData(C, "s", frozenset())).ok
    assert s.get(C, "s") is None
    s.apply(st.ApplyBrokerId(C, "s", 1, "n"))
    s.apply(st.RegisterBroker(C, "s", 1, "a:1", "", False, "n"))
    r, _ = _elect(s, {1: el.Live()})
    assert r.ok and s.get(C, "s").master_epoch == 3


def test_handoff_election_leaves_the_old_master_out_of_the_new_set():
    s = _setup(4, learners=(4,))
    alive = {b: el.Live() for b in (1, 2, 3, 4)}
    assert _elect(s, alive, preferred=1, designate=True)[0].ok
    bs = s.get(C, "s")
    assert s.apply(st.AlterSyncStateSet(C, "s", 1, bs.master_epoch, frozenset({1, 2, 3}), bs.sss_epoch)).ok
    plain = el.elect(bs, alive, preferred=2, designate=True)
    assert plain.master_id == 2 and plain.sss == {1, 2, 3}            # a manual switch keeps the old master
    d = el.elect(bs, alive, preferred=2, designate=True, handoff=True)
    assert d.master_id == 2 and d.sss == {2, 3} and "handed off" in d.reason
    cmd, d2 = el.decide(bs, alive, frozenset(), 5, 0, preferred=2, designate=True, handoff=True)
    assert cmd is not None and cmd.new_sss == {2, 3}
    assert s.apply(cmd).ok and bs.master_id == 2 and bs.sss == {2, 3}
    # handoff only means something for a named successor: an automatic election ignores it
    _, d3 = el.decide(bs, {b: el.Live() for b in (1, 3)}, frozenset(), 6, 0, handoff=True)
    assert d3.sss >= {3} and d3.master_id in (3,)


def test_remove_replica_rules():
    s = _setup(4, learners=(4,))
    alive = {b: el.Live() for b in (1, 2, 3)}
    assert _elect(s, alive, preferred=1, designate=True)[0].ok
    bs = s.get(C, "s")
    assert bs.master_id == 1
    assert s.apply(st.AlterSyncStateSet(C, "s", 1, bs.master_epoch, frozenset({1, 2, 3}), bs.sss_epoch)).ok
    before = copy.deepcopy(vars(s))
    refusals = {
        st.RemoveReplica(C, "nope", 2): "SET_NOT_FOUND",
        st.RemoveReplica(C, "s", 9): "UNKNOWN_BROKER",
        st.RemoveReplica(C, "s", 1): "IS_MASTER",                       # hand off first
        st.RemoveReplica(C, "s", 2, min_replicas=3): "BELOW_MIN_REPLICAS",   # 3 replicas, 3 needed
    }
    for cmd, code in refusals.items():
        r = s.apply(cmd)
        assert not r.ok and r.code == code, (cmd, r)
        assert copy.deepcopy(vars(s)) == before, f"refused {cmd} changed the state"
    r = s.apply(st.RemoveReplica(C, "s", 1))
    assert "elect s --broker-id 2" in r.reason                            # names a member to hand off to
    # a learner goes whatever the counts; the sync-state-set is untouched
    e = bs.sss_epoch
    assert s.apply(st.RemoveReplica(C, "s", 4, min_replicas=3)).ok
    assert 4 not in bs.replicas and bs.sss_epoch == e
    # automatic rule: 3 replicas need 2 in sync: one may go, leaving the set {1, 3} (epoch + 1)
    r = s.apply(st.RemoveReplica(C, "s", 2))
    assert r.ok and r.sss == (1, 3) and r.sss_epoch == e + 1 and 2 not in bs.replicas
    # 2 replicas left: the automatic rule now needs 1, a fixed rule of 2 refuses
    assert s.apply(st.RemoveReplica(C, "s", 3, min_replicas=2)).code == "BELOW_MIN_REPLICAS"
    # a member out of the sync-state-set whose removal would not shrink it below the minimum
    s = _setup(4)
    assert _elect(s, {b: el.Live() for b in (1, 2, 3, 4)}, preferred=1, designate=True)[0].ok
    bs = s.get(C, "s")
    assert s.apply(st.AlterSyncStateSet(C, "s", 1, bs.master_epoch, frozenset({1, 2}), bs.sss_epoch)).ok
    assert s.apply(st.RemoveReplica(C, "s", 2, min_replicas=2)).code == "BELOW_MIN_REPLICAS"  # set {1} < 2
    e = bs.sss_epoch
    assert s.apply(st.RemoveReplica(C, "s", 4, min_replicas=2)).ok and bs.sss_epoch == e   # not a member
    # its id can be applied for again (a wiped replica rejoining under its own id, new check code)
    assert s.apply(st.ApplyBrokerId(C, "s", 4, "new-code")).ok
    st.check_invariants(s)


def test_state_pickles_for_raft_snapshots():
    s = _setup(3)
    _elect(s, {1: el.Live()})
    t = pickle.loads(pickle.dumps(s))
    assert vars(t) == vars(s)


# ---- random command sequences -----------------------------------------------------------------------

SETS = ("a", "b")
IDS = hs.integers(min_value=0, max_value=6)
lives = hs.builds(el.Live, epoch=hs.integers(0, 4), max_offset=hs.integers(0, 1 << 40),
                  confirm_offset=hs.just(0), priority=hs.integers(0, 3))


class ControllerMachine(RuleBasedStateMachine):
    """Random commands on two replicas of the state; liveness is a random input."""

    def __init__(self) -> None:
        super().__init__()
        self.s = st.ControllerState()
        self.replica = st.ControllerState()
        self.alive: dict[tuple[str, int], el.Live] = {}
        self.max_epoch: dict[str, int] = {}

    def _apply(self, cmd: st.Command) -> st.Result:
        before = _state_dict(self.s)
        bs = self.s.get(C, getattr(cmd, "broker_set", ""))
        learner_master = isinstance(cmd, st.ElectMaster) and bs is not None and cmd.master_id in bs.replicas \
            and bs.replicas[cmd.master_id].learner
        r = self.s.apply(cmd)
        r2 = self.replica.apply(cmd)
        assert r == r2
        if not r.ok:
            assert _state_dict(self.s) == before, f"rejected {cmd} changed the state"
        assert not (learner_master and r.ok), "a learner became master"
        return r

    def _alive(self, name: str) -> dict[int, el.Live]:
        return {b: lv for (n, b), lv in self.alive.items() if n == name}

    @rule(name=hs.sampled_from(SETS), b=IDS, other=hs.booleans())
    def apply_id(self, name, b, other):
        self._apply(st.ApplyBrokerId(C, name, b, "other" if other else f"k{b}"))

    @rule(name=hs.sampled_from(SETS), b=IDS, learner=hs.booleans(), code=hs.sampled_from(["own", "other", ""]))
    def register(self, name, b, learner, code):
        code = f"k{b}" if code == "own" else code
        self._apply(st.RegisterBroker(C, name, b, f"h:{b}", f"ha:{b}", learner, code))

    @rule(name=hs.sampled_from(SETS), b=hs.integers(1, 6), learner=hs.sampled_from([False, False, False, True]),
          live=lives)
    def bring_up(self, name, b, learner, live):
        """A broker starts: applies for its id, registers, heartbeats."""
        self._apply(st.ApplyBrokerId(C, name, b, f"k{b}"))
        self._apply(st.RegisterBroker(C, name, b, f"h:{b}", f"ha:{b}", learner, f"k{b}"))
        self.alive[(name, b)] = live

    @rule(name=hs.sampled_from(SETS))
    def master_expands_set(self, name):
        """The master adds every live registered non-learner replica to its set."""
        bs = self.s.get(C, name)
        if bs is None or bs.master_id is None:
            return
        alive = self._alive(name)
        want = frozenset({bs.master_id} | {b for b in bs.replicas if b in alive and bs.electable(b)})
        assert self._apply(st.AlterSyncStateSet(C, name, bs.master_id, bs.master_epoch, want, bs.sss_epoch)).ok

    @rule(name=hs.sampled_from(SETS), b=IDS, live=hs.one_of(hs.none(), lives))
    def set_liveness(self, name, b, live):
        if live is None:
            self.alive.pop((name, b), None)
        else:
            self.alive[(name, b)] = live

    @rule(name=hs.sampled_from(SETS), members=hs.frozensets(IDS, max_size=4), use_master=hs.booleans(),
          de=hs.integers(-1, 1), dse=hs.integers(-1, 1))
    def alter(self, name, members, use_master, de, dse):
        bs = self.s.get(C, name)
        m = bs.master_id if (bs is not None and use_master and bs.master_id) else 1
        me = (bs.master_epoch if bs else 0) + de
        se = (bs.sss_epoch if bs else 0) + dse
        self._apply(st.AlterSyncStateSet(C, name, m, me, members | ({m} if use_master else set()), se))

    @rule(name=hs.sampled_from(SETS), preferred=IDS, designate=hs.booleans(), unclean=hs.booleans())
    def elect(self, name, preferred, designate, unclean):
        bs = self.s.get(C, name)
        if bs is None:
            return
        alive = self._alive(name)
        d = el.elect(bs, alive, preferred=preferred, designate=designate, unclean_enabled=unclean)
        if d.master_id:
            assert d.master_id in alive and bs.electable(d.master_id)
            if not d.unclean and bs.had_master:
                assert d.master_id in bs.sss
            if not designate:   # the best-ranked candidate wins
                pool = el.candidates(bs, alive, unclean=d.unclean)
                assert d.master_id == min(pool, key=lambda b: el.rank_key(b, alive[b], preferred))
            r = self._apply(st.ElectMaster(C, name, bs.master_epoch, d.master_id, d.sss, d.unclean, d.reason, 7))
            assert r.ok, r
        elif d.code == "NO_CANDIDATE" and bs.master_id is not None:
            assert not [b for b in el.candidates(bs, alive) if b in alive]
            assert self._apply(st.ElectMaster(C, name, bs.master_epoch, 0, frozenset(), False, "lost", 7)).ok

    @rule(name=hs.sampled_from(SETS), master=IDS, de=hs.integers(-1, 1), members=hs.frozensets(IDS, max_size=3),
          unclean=hs.booleans())
    def arbitrary_election(self, name, master, de, members, unclean):
        bs = self.s.get(C, name)
        e = (bs.master_epoch if bs else 0) + de
        self._apply(st.ElectMaster(C, name, e, master, members | {master}, unclean, "random", 7))

    @rule(name=hs.sampled_from(SETS), ids=hs.frozensets(IDS, max_size=2))
    def clean(self, name, ids):
        self._apply(st.CleanBrokerData(C, name, ids))

    @rule(name=hs.sampled_from(SETS), b=IDS, min_replicas=hs.sampled_from([-1, 1, 2, 3]))
    def remove_replica(self, name, b, min_replicas):
        """An operator decommissions a replica: never the master, never below the minimum."""
        bs = self.s.get(C, name)
        before = copy.deepcopy(bs)
        r = self._apply(st.RemoveReplica(C, name, b, min_replicas))
        if not r.ok:
            return
        assert before is not None and b in before.replicas and before.master_id != b
        bs = self.s.get(C, name)
        assert b not in bs.replicas and b not in bs.sss
        if not before.replicas[b].learner:
            count = sum(1 for x in before.replicas.values() if not x.learner)
            need = st.required_replicas(min_replicas, count)
            assert sum(1 for x in bs.replicas.values() if not x.learner) >= need
            if bs.master_id is not None:
                assert len(bs.sss) >= need

    @rule(name=hs.sampled_from(SETS), closed=hs.frozensets(hs.integers(1, 6), max_size=2))
    def failover_scan(self, name, closed):
        """The real leader scan (leader_scan.py) on a liveness table holding the random liveness
        (brokers in `closed` had their session close): a set whose master is dead gets a master
        whenever a live, electable sync-state-set member with an open session exists, and a broker
        whose session closed is never elected."""
        live = Liveness(2.5, 2.0)
        scan = LeaderScan(ScanSettings(liveness_rebuild_s=1.0, election_retry_s=0.5))
        scan.step(10.0, 10000, True, 1, self.s, live)    # becomes leader: liveness starts empty
        scan.announce_done(True)
        for (n, b), lv in self.alive.items():
            live.record(((C, n), b), lv, 10.0, 10000, gen=b)
            if n == name and b in closed:
                live.session_closed(((C, n), b), b)
        for a in scan.step(11.0, 11000, True, 1, self.s, live):
            if isinstance(a, Elect) and a.key == (C, name):
                assert a.command.master_id not in closed, "a broker whose session closed was elected"
                assert self._apply(a.command).ok
        bs = self.s.get(C, name)
        if bs is None:
            return
        alive = self._alive(name)
        live_members = [b for b in (bs.sss if bs.had_master else bs.replicas)
                        if b in alive and b not in closed and bs.electable(b)]
        if live_members:
            assert bs.master_id is not None, "a set was left without master while a member is alive"

    @rule()
    def replica_restarts_from_snapshot(self):
        """A Raft snapshot (pickle, as pysyncobj's full dump) then more commands: still equal."""
        self.replica = pickle.loads(pickle.dumps(self.replica))

    @invariant()
    def invariants_hold(self):
        st.check_invariants(self.s)
        for name in SETS:
            bs = self.s.get(C, name)
            cur = bs.master_epoch if bs else self.s.retired_epochs.get((C, name), 0)
            assert cur >= self.max_epoch.get(name, 0), "master epoch went backwards"
            self.max_epoch[name] = cur
            hist = [h for h in self.s.history if h.broker_set == name]
            epochs = [h.master_epoch for h in hist]
            assert epochs == sorted(set(epochs)), "two master changes share an epoch"

    @invariant()
    def replicas_agree(self):
        assert vars(self.s) == vars(self.replica)


TestControllerMachine = ControllerMachine.TestCase
TestControllerMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@given(alive=hs.dictionaries(hs.integers(1, 5), lives, max_size=5), preferred=hs.integers(0, 5))
@settings(max_examples=200, deadline=None)
def test_election_picks_a_live_best_candidate(alive, preferred):
    s = _setup(5, learners=(5,))
    _elect(s, {1: el.Live()})
    s.apply(st.AlterSyncStateSet(C, "s", 1, 1, frozenset({1, 2, 3, 4}), 1))
    alive = {b: lv for b, lv in alive.items() if b != 1}   # the master is dead
    d = el.elect(s.get(C, "s"), alive, preferred=preferred)
    cands = [b for b in (2, 3, 4) if b in alive]
    if not cands:
        assert d.master_id == 0
        return
    assert d.master_id in cands
    best = min(cands, key=lambda b: el.rank_key(b, alive[b], preferred))
    assert d.master_id == best
    assert d.sss == frozenset(cands)
