"""The controller's refusal codes (pure): why a command or request was refused without an RPC
error (`CtlResult.ok=false`, `code` = one of these names, listed in protos/controller.proto as
`CtlResult.Code`; tests/controller/test_refusals.py checks the two lists agree).

A `StrEnum`: members compare equal to their names, so a reply's `code` string can be compared
with them directly. Callers branch on these codes, never on the reason's words.
"""

from __future__ import annotations

import enum


class Refusal(enum.StrEnum):
    BAD_REQUEST = "BAD_REQUEST"                     # a required field is missing or invalid
    SET_NOT_FOUND = "SET_NOT_FOUND"                 # no such broker set
    BROKER_ID_INVALID = "BROKER_ID_INVALID"         # id < 1, not applied for, or another broker's
    ROLE_CONFLICT = "ROLE_CONFLICT"                 # the master cannot register as a learner
    INVALID_MASTER = "INVALID_MASTER"               # the caller is not the set's master
    FENCED_MASTER_EPOCH = "FENCED_MASTER_EPOCH"     # the caller's master epoch is not current
    FENCED_SSS_EPOCH = "FENCED_SSS_EPOCH"           # the caller's sync-state-set epoch is not current
    MASTER_NOT_IN_SET = "MASTER_NOT_IN_SET"         # a sync-state-set must contain its master
    UNKNOWN_BROKER = "UNKNOWN_BROKER"               # not a registered replica of the set
    LEARNER_IN_SET = "LEARNER_IN_SET"               # learners are never sync-state-set members
    NOT_IN_SET = "NOT_IN_SET"                       # outside the sync-state-set (unclean election off)
    NOT_ELECTABLE = "NOT_ELECTABLE"                 # a learner or an unregistered replica
    STALE_ELECTION = "STALE_ELECTION"               # decided at an epoch that has moved since
    NO_CHANGE = "NO_CHANGE"                         # the set already has no master
    IS_MASTER = "IS_MASTER"                         # cannot clean the master (switch it first)
    MASTER_ALIVE = "MASTER_ALIVE"                   # no election: the master is alive
    ALREADY_MASTER = "ALREADY_MASTER"               # the broker named is master already
    NOT_CANDIDATE = "NOT_CANDIDATE"                 # the broker named is not a live electable member
    NO_CANDIDATE = "NO_CANDIDATE"                   # no live electable member (unclean election off)
    BROKER_NOT_ALIVE = "BROKER_NOT_ALIVE"           # a sync-state-set addition that is not alive
    BROKER_ALIVE = "BROKER_ALIVE"                   # cannot clean a live broker (stop it first)
    LIVENESS_NOT_READY = "LIVENESS_NOT_READY"       # a new leader is still rebuilding liveness
    ELECTION_IN_PROGRESS = "ELECTION_IN_PROGRESS"   # one election per set at a time
    NODE_ALREADY_MEMBER = "NODE_ALREADY_MEMBER"     # add-node: that Raft address is a member already
    NODE_NOT_MEMBER = "NODE_NOT_MEMBER"             # remove-node: no member has that address
    MEMBERSHIP_CHANGE_FAILED = "MEMBERSHIP_CHANGE_FAILED"   # Raft refused or did not commit the change
    BELOW_MIN_REPLICAS = "BELOW_MIN_REPLICAS"       # a removal would break the minimum replica rule
    USER_NOT_FOUND = "USER_NOT_FOUND"               # no such user (auth)
    ACL_NOT_FOUND = "ACL_NOT_FOUND"                 # the user has no such policy entry (auth)
