"""ACL decision core (common/acl.py) and its replicated state (controller/auth_state.py), as pure
functions: exact and prefix resources, deny wins, default deny, admin, and a reference model."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.common import acl
from orbitmq.controller import auth_state as au
from orbitmq.controller.state import ControllerState

T, G = acl.ResourceType.TOPIC, acl.ResourceType.GROUP
A = acl.Action


def snap(entries=(), admin=False) -> acl.Snapshot:
    return acl.Snapshot({"u": acl.User("u", "secret-123", admin)}, {"u": tuple(entries)}, 1)


def e(res: str, actions: str, decision: str = "allow") -> acl.Entry:
    return acl.Entry(acl.Resource.parse(res), acl.parse_actions(actions), acl.Decision(decision))


def ok(s, *checks) -> bool:
    return acl.decide(s, "u", [acl.Check(*c) for c in checks]).allowed


def test_examples():
    s = snap([e("TOPIC:orders", "pub"), e("TOPIC:logs-*", "sub,pub"), e("TOPIC:logs-secret", "all", "deny"),
              e("GROUP:billing", "sub")])
    assert ok(s, (T, "orders", A.PUB))
    assert not ok(s, (T, "orders", A.SUB))                  # action not listed
    assert not ok(s, (T, "orders2", A.PUB))                 # exact means exact
    assert ok(s, (T, "logs-app", A.SUB), (G, "billing", A.SUB))
    assert not ok(s, (T, "logs-secret", A.SUB))             # deny wins over the prefix allow
    assert not ok(s, (T, "logs-app", A.SUB), (G, "other", A.SUB))   # every check must pass
    assert not ok(s, (T, "logs-app", A.CREATE))
    assert ok(s, (T, "%RETRY%billing", A.PUB))              # a group's retry topic = sub on the group
    assert ok(s, (T, "%DLQ%billing", A.SUB))
    assert not ok(s, (T, "%RETRY%other", A.PUB))
    assert ok(snap(admin=True), (T, "anything", A.ADMIN))
    assert not acl.decide(s, "nobody", [acl.Check(T, "orders", A.PUB)]).allowed
    assert not acl.decide(s, "u", [], admin_only=True).allowed
    assert acl.decide(snap(admin=True), "u", [], admin_only=True).allowed
    assert not ok(snap(), (T, "orders", A.PUB))              # no policy: default deny


@pytest.mark.parametrize("bad", ["orders", "QUEUE:x", "TOPIC:", "TOPIC:a*b", "TOPIC:a b", "GROUP:a,b"])
def test_bad_resources(bad):
    with pytest.raises(acl.AclError):
        acl.Resource.parse(bad)


def test_resource_forms():
    assert acl.Resource.parse("topic:*") == acl.Resource(T, "", True)
    assert acl.Resource.parse("GROUP:g-*") == acl.Resource(G, "g-", True)
    assert str(acl.Resource.parse("TOPIC:a")) == "TOPIC:a"
    with pytest.raises(acl.AclError):
        acl.parse_actions("pub,fly")
    with pytest.raises(acl.AclError):
        acl.parse_actions("")


# ---- exhaustive: a reference model --------------------------------------------------------------

NAMES = ["a", "ab", "abc", "b", "%RETRY%a", "%DLQ%ab"]
resources = st.builds(lambda t, n, p: acl.Resource(t, n, p), st.sampled_from([T, G]),
                      st.sampled_from(["", "a", "ab", "abc", "b"]), st.booleans())
entries = st.builds(acl.Entry, resources, st.frozensets(st.sampled_from(list(A)), min_size=1),
                    st.sampled_from(list(acl.Decision)))
checks = st.builds(acl.Check, st.sampled_from([T, G]), st.sampled_from(NAMES),
                   st.sampled_from([A.PUB, A.SUB, A.CREATE, A.ADMIN]))


def model(es, c) -> bool:
    t, name, action = c.type, c.name, c.action
    if t == T and name.startswith(("%RETRY%", "%DLQ%")):
        t, name, action = G, name.split("%", 2)[2], A.SUB
    elif t == G and name.startswith("%RETRY%"):
        name = name[len("%RETRY%"):]
    hits = [x for x in es if x.resource.type == t
            and (name.startswith(x.resource.name) if x.resource.prefix else name == x.resource.name)
            and (A.ALL in x.actions or action in x.actions)]
    return bool(hits) and all(x.decision == acl.Decision.ALLOW for x in hits)


@settings(max_examples=600, deadline=None)
@given(st.lists(entries, max_size=8), st.lists(checks, min_size=1, max_size=3), st.randoms())
def test_matches_model_and_order_free(es, cs, rnd):
    s = snap(es)
    want = all(model(es, c) for c in cs)
    assert acl.decide(s, "u", cs).allowed == want
    shuffled = list(es)
    rnd.shuffle(shuffled)
    assert acl.decide(snap(shuffled), "u", cs).allowed == want
    assert acl.decide(snap(es, admin=True), "u", cs).allowed          # admin: everything
    assert not acl.decide(s, "other", cs).allowed                     # unknown user: nothing


@settings(max_examples=400, deadline=None)
@given(st.lists(entries, max_size=6), checks)
def test_deny_wins_and_allow_never_removes(es, c):
    s = snap(es)
    before = acl.decide(s, "u", [c]).allowed
    n = acl.normalize(c)
    exact = acl.Resource(n.type, n.name, False)
    deny = acl.Entry(exact, frozenset([n.action]), acl.Decision.DENY)
    assert not acl.decide(snap([*es, deny]), "u", [c]).allowed           # a matching deny always wins
    allow = acl.Entry(acl.Resource(n.type, "", True), frozenset([A.ALL]), acl.Decision.ALLOW)
    after = acl.decide(snap([*es, allow]), "u", [c]).allowed
    assert after or not before                                          # an allow never takes a right away
    has_deny = any(x.decision == acl.Decision.DENY and x.resource.matches(n.type, n.name) and x.covers(n.action)
                   for x in es)
    assert after == (not has_deny)


# ---- replicated state ---------------------------------------------------------------------------

def test_auth_state_commands():
    s = au.AuthState()
    assert s.apply(au.UpsertUser("alice", "alice-secret", False)) == (True, "", "")
    assert s.apply(au.UpsertUser("bad key!", "alice-secret", False))[1] == "BAD_REQUEST"
    assert s.apply(au.UpsertUser("bob", "short", False))[1] == "BAD_REQUEST"
    assert s.apply(au.SetAclEntry("alice", "TOPIC:o*", ("pub",), "allow"))[0]
    assert s.apply(au.SetAclEntry("alice", "TOPIC:o*", ("sub",), "deny"))[0]      # replaces the entry
    assert s.apply(au.SetAclEntry("nobody", "TOPIC:o", ("sub",), "allow"))[1] == "USER_NOT_FOUND"
    assert s.apply(au.SetAclEntry("alice", "TOPIC:o", ("fly",), "allow"))[1] == "BAD_REQUEST"
    assert s.apply(au.SetAclEntry("alice", "TOPIC:o", ("pub",), "maybe"))[1] == "BAD_REQUEST"
    v = s.version
    snapshot = s.snapshot()
    assert snapshot.policies["alice"] == (e("TOPIC:o*", "sub", "deny"),)
    assert s.apply(au.UpsertUser("alice", "other-secret", True, only_if_absent=True)) == (True, "", "exists")
    assert s.users["alice"] == ("alice-secret", False) and s.version == v
    assert s.apply(au.DeleteAcl("alice", "TOPIC:x"))[1] == "ACL_NOT_FOUND"
    assert s.apply(au.DeleteAcl("alice", "TOPIC:o*"))[0] and "alice" not in s.acls
    assert s.apply(au.SetAclEntry("alice", "GROUP:g", ("sub",), "allow"))[0]
    assert s.apply(au.DeleteUser("alice"))[0] and not s.acls and not s.users
    assert s.apply(au.DeleteUser("alice"))[1] == "USER_NOT_FOUND"


cmds = st.one_of(
    st.builds(au.UpsertUser, st.sampled_from(["u1", "u2", "bad key"]), st.sampled_from(["secret-1234", "x"]),
              st.booleans(), st.booleans()),
    st.builds(au.DeleteUser, st.sampled_from(["u1", "u2"])),
    st.builds(au.SetAclEntry, st.sampled_from(["u1", "u2"]), st.sampled_from(["TOPIC:a", "GROUP:b*", "x"]),
              st.sampled_from([("pub",), ("sub", "create"), ("nope",)]), st.sampled_from(["allow", "deny"])),
    st.builds(au.DeleteAcl, st.sampled_from(["u1", "u2"]), st.sampled_from(["", "TOPIC:a", "GROUP:b*"])))


@settings(max_examples=200, deadline=None)
@given(st.lists(cmds, max_size=25))
def test_state_all_or_nothing_and_replayable(commands):
    """A refused command changes nothing; replaying the log gives the same state; policies only
    exist for users that exist; the version counts the accepted changes."""
    a, b = ControllerState(), ControllerState()
    changes = 0
    for c in commands:
        before = pickle.dumps(a.auth)
        r = a.apply(c)
        if not r.ok:
            assert pickle.dumps(a.auth) == before
        elif r.reason != "exists":
            changes += 1
        assert set(a.auth.acls) <= set(a.auth.users)
    for c in commands:
        b.apply(c)
    assert a.auth == b.auth and a.auth.version == changes
    a.auth.snapshot()   # always convertible


def test_old_snapshot_without_auth_loads():
    s = ControllerState()
    d = dict(s.__dict__)
    d.pop("auth")
    old = ControllerState.__new__(ControllerState)
    old.__setstate__(d)
    assert old.auth.version == 0 and old.apply(au.UpsertUser("a", "secret-123", True)).ok
