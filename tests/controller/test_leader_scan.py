"""The leader's scan (pure): leadership changes, the liveness rebuild, pushes, elections, retries,
and the closed-session rule (issue 8: a broker whose session closed is never a candidate)."""

from __future__ import annotations

from orbitmq.controller import election as el
from orbitmq.controller import leader_scan as ls
from orbitmq.controller import state as st
from orbitmq.controller.liveness import Liveness

C, S = "c1", "s"
KEY = (C, S)


def _setup(n: int = 3) -> st.ControllerState:
    s = st.ControllerState()
    for b in range(1, n + 1):
        assert s.apply(st.ApplyBrokerId(C, S, b, f"k{b}")).ok
        assert s.apply(st.RegisterBroker(C, S, b, f"h:{b}", f"ha:{b}", False, f"k{b}")).ok
    return s


def _leading(s: st.ControllerState, live: Liveness, now: float = 0.0) -> ls.LeaderScan:
    scan = ls.LeaderScan(ls.ScanSettings(liveness_rebuild_s=3.0, election_retry_s=0.5))
    acts = scan.step(now, 0, True, 1, s, live)
    assert [type(a) for a in acts] == [ls.BecameLeader, ls.Announce, ls.WaitLiveness]
    scan.announce_done(True)
    return scan


def _carry_out(s: st.ControllerState, scan: ls.LeaderScan, acts: list[ls.Action]) -> list[st.Result]:
    out = []
    for a in acts:
        if isinstance(a, ls.Elect):
            out.append(s.apply(a.command))
            scan.election_done(a.key)
    return out


def test_a_closed_session_is_never_a_candidate_when_every_broker_dies_at_once():
    """Issue 8: master 1 and members 2, 3 all die; 2's session closed 1.6 s before the scan that
    replaces 1. 2 (the best ranked) must not be elected; nobody alive may be, so "no master"."""
    s = _setup()
    live = Liveness(timeout_s=2.5, lease_s=2.0)
    scan = _leading(s, live)
    for b in (1, 2, 3):
        live.record((KEY, b), el.Live(0, 0), 3.0, 3000, gen=b)
    assert _carry_out(s, scan, scan.step(3.0, 3000, True, 1, s, live))[0].ok   # first election: 1
    assert s.get(C, S).master_id == 1
    assert s.apply(st.AlterSyncStateSet(C, S, 1, 1, frozenset({1, 2, 3}), 1)).ok
    live.record((KEY, 1), el.Live(1, 100), 10.0, 10000, gen=1)
    live.record((KEY, 2), el.Live(1, 100), 10.4, 10400, gen=2)   # 2 ranks first: lowest id of equals
    live.record((KEY, 3), el.Live(1, 100), 10.4, 10400, gen=3)
    for b in (1, 2, 3):
        live.session_closed((KEY, b), b)    # all killed at ~10.4
    # at 12.0 the master's lease is over (2 s since its last heartbeat); 2 and 3 are "alive" by
    # their leases for 0.4 s more, but their sessions closed 1.6 s ago
    assert live.alive((KEY, 2), 12.0) and live.closed((KEY, 2))
    acts = scan.step(12.0, 12000, True, 1, s, live)
    elects = [a for a in acts if isinstance(a, ls.Elect)]
    assert len(elects) == 1 and elects[0].command.master_id == 0, elects
    assert "no live sync-state-set member" in elects[0].command.reason
    assert _carry_out(s, scan, acts)[0].ok
    bs = s.get(C, S)
    assert bs.master_id is None and bs.master_epoch == 2 and bs.sss == {1, 2, 3}
    # 3 comes back on a new session: it is elected at the next retry
    live.record((KEY, 3), el.Live(1, 100), 12.5, 12500, gen=9)
    acts = scan.step(12.6, 12600, True, 1, s, live)
    elects = [a for a in acts if isinstance(a, ls.Elect)]
    assert elects and elects[0].command.master_id == 3 and elects[0].command.new_sss == {3}


def test_election_excludes_closed_brokers_but_a_closed_master_counts_as_alive():
    s = _setup()
    bs = s.get(C, S)
    assert s.apply(st.ElectMaster(C, S, 0, 1, frozenset({1}), False, "first", 1)).ok
    assert s.apply(st.AlterSyncStateSet(C, S, 1, 1, frozenset({1, 2, 3}), 1)).ok
    alive = {1: el.Live(1, 5), 2: el.Live(1, 9), 3: el.Live(1, 5)}
    assert el.elect(bs, alive, closed={1}).code == "MASTER_ALIVE"      # its lease may hold: not replaced
    d = el.elect(bs, {2: el.Live(1, 9), 3: el.Live(1, 5)}, closed={2})
    assert d.master_id == 3 and d.sss == {3}                           # 2 ranks first but is going away
    d = el.elect(bs, alive, preferred=2, designate=True, closed={2})
    assert d.code == "NOT_CANDIDATE" and "session closed" in d.reason
    assert el.elect(bs, {2: el.Live(), 3: el.Live()}, closed={2, 3}).code == "NO_CANDIDATE"
    assert el.candidates(bs, alive, closed={3}) == [1, 2]


def test_no_election_before_liveness_is_rebuilt_and_a_step_down_forgets_everything():
    s = _setup()
    live = Liveness(2.5, 2.0)
    scan = _leading(s, live, now=100.0)
    live.record((KEY, 1), el.Live(), 100.5, 0, gen=1)
    acts = scan.step(102.9, 0, True, 1, s, live)
    assert acts == [ls.WaitLiveness(103.0)]
    acts = scan.step(103.0, 0, True, 1, s, live)
    assert [type(a) for a in acts] == [ls.Push, ls.Elect] and acts[1].command.master_id == 1
    # a new term (even while still leader) is a leadership change: start over
    acts = scan.step(103.1, 0, True, 2, s, live)
    assert acts == [ls.StepDown()] and not live.entries and not scan.electing
    acts = scan.step(103.2, 0, True, 2, s, live)
    assert [type(a) for a in acts] == [ls.BecameLeader, ls.Announce, ls.WaitLiveness]
    assert scan.step(103.3, 0, False, 2, s, live) == [ls.StepDown()]
    assert scan.step(103.4, 0, False, 2, s, live) == []


def test_one_election_per_set_at_a_time_and_retries_spaced():
    s = _setup()
    live = Liveness(2.5, 2.0)
    scan = _leading(s, live)
    acts = scan.step(3.0, 0, True, 1, s, live)      # nobody alive, no master yet: nothing to commit
    assert not [a for a in acts if isinstance(a, ls.Elect)]
    live.record((KEY, 2), el.Live(), 3.1, 0)
    assert not [a for a in scan.step(3.2, 0, True, 1, s, live) if isinstance(a, ls.Elect)]  # retry spacing
    acts = [a for a in scan.step(3.5, 0, True, 1, s, live) if isinstance(a, ls.Elect)]
    assert len(acts) == 1 and acts[0].command.master_id == 2
    # still in flight: no second election even after the retry interval
    assert not [a for a in scan.step(4.5, 0, True, 1, s, live) if isinstance(a, ls.Elect)]
    assert _carry_out(s, scan, acts)[0].ok
    acts = scan.step(4.6, 0, True, 1, s, live)
    assert [type(a) for a in acts] == [ls.Push]      # the view changed; the master is alive
    assert scan.step(4.7, 0, True, 1, s, live) == []


def test_push_signature_changes_with_everything_a_role_depends_on():
    s = _setup()
    sig0 = ls.push_signature(s.get(C, S))
    assert s.apply(st.ElectMaster(C, S, 0, 1, frozenset({1}), False, "first", 1)).ok
    sig1 = ls.push_signature(s.get(C, S))
    assert sig1 != sig0 and sig1[:2] == (1, 1)
    assert s.apply(st.AlterSyncStateSet(C, S, 1, 1, frozenset({1, 2}), 1)).ok
    assert ls.push_signature(s.get(C, S)) != sig1
    assert ls.push_signature(None) == (0, 0, 0, "", "", False)


def test_a_node_serves_brokers_only_while_it_heard_from_a_majority_recently():
    """Simulator seed 10676: a leader resumed from a pause must not renew leases before its Raft
    tick notices it was deposed."""
    scan = ls.LeaderScan(ls.ScanSettings(3.0, 0.5, leader_fallback_s=1.0))
    assert not scan.serving(True, 0.0)             # not announced yet
    scan.announce_done(True)
    assert scan.serving(True, 0.2)
    assert not scan.serving(True, 1.0)             # no majority contact for the fallback time
    assert not scan.serving(False, 0.0)


def test_majority_contact_age_reads_the_raft_response_times():
    from types import SimpleNamespace

    from orbitmq.controller.raft import RaftNode, monotonic_time
    now = monotonic_time()
    node = SimpleNamespace(obj=SimpleNamespace(otherNodes=["b", "c"], _SyncObj__lastResponseTime={"b": now - 5.0,
                                                                                                   "c": now - 0.3}))
    age = RaftNode.majority_contact_age(node)      # one of two peers is enough for a majority of 3
    assert 0.3 <= age < 1.0
    node.obj._SyncObj__lastResponseTime = {"b": now - 5.0, "c": now - 4.0}
    assert RaftNode.majority_contact_age(node) >= 4.0
    alone = SimpleNamespace(obj=SimpleNamespace(otherNodes=[]))
    assert RaftNode.majority_contact_age(alone) == 0.0
