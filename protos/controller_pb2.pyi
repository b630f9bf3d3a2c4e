from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CtlResult(_message.Message):
    __slots__ = ("ok", "code", "reason")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CODE_UNSPECIFIED: _ClassVar[CtlResult.Code]
        BAD_REQUEST: _ClassVar[CtlResult.Code]
        SET_NOT_FOUND: _ClassVar[CtlResult.Code]
        BROKER_ID_INVALID: _ClassVar[CtlResult.Code]
        ROLE_CONFLICT: _ClassVar[CtlResult.Code]
        INVALID_MASTER: _ClassVar[CtlResult.Code]
        FENCED_MASTER_EPOCH: _ClassVar[CtlResult.Code]
        FENCED_SSS_EPOCH: _ClassVar[CtlResult.Code]
        MASTER_NOT_IN_SET: _ClassVar[CtlResult.Code]
        UNKNOWN_BROKER: _ClassVar[CtlResult.Code]
        LEARNER_IN_SET: _ClassVar[CtlResult.Code]
        NOT_IN_SET: _ClassVar[CtlResult.Code]
        NOT_ELECTABLE: _ClassVar[CtlResult.Code]
        STALE_ELECTION: _ClassVar[CtlResult.Code]
        NO_CHANGE: _ClassVar[CtlResult.Code]
        IS_MASTER: _ClassVar[CtlResult.Code]
        MASTER_ALIVE: _ClassVar[CtlResult.Code]
        ALREADY_MASTER: _ClassVar[CtlResult.Code]
        NOT_CANDIDATE: _ClassVar[CtlResult.Code]
        NO_CANDIDATE: _ClassVar[CtlResult.Code]
        BROKER_NOT_ALIVE: _ClassVar[CtlResult.Code]
        BROKER_ALIVE: _ClassVar[CtlResult.Code]
        LIVENESS_NOT_READY: _ClassVar[CtlResult.Code]
        ELECTION_IN_PROGRESS: _ClassVar[CtlResult.Code]
        NODE_ALREADY_MEMBER: _ClassVar[CtlResult.Code]
        NODE_NOT_MEMBER: _ClassVar[CtlResult.Code]
        MEMBERSHIP_CHANGE_FAILED: _ClassVar[CtlResult.Code]
        BELOW_MIN_REPLICAS: _ClassVar[CtlResult.Code]
        USER_NOT_FOUND: _ClassVar[CtlResult.Code]
        ACL_NOT_FOUND: _ClassVar[CtlResult.Code]
    CODE_UNSPECIFIED: CtlResult.Code
    BAD_REQUEST: CtlResult.Code
    SET_NOT_FOUND: CtlResult.Code
    BROKER_ID_INVALID: CtlResult.Code
    ROLE_CONFLICT: CtlResult.Code
    INVALID_MASTER: CtlResult.Code
    FENCED_MASTER_EPOCH: CtlResult.Code
    FENCED_SSS_EPOCH: CtlResult.Code
    MASTER_NOT_IN_SET: CtlResult.Code
    UNKNOWN_BROKER: CtlResult.Code
    LEARNER_IN_SET: CtlResult.Code
    NOT_IN_SET: CtlResult.Code
    NOT_ELECTABLE: CtlResult.Code
    STALE_ELECTION: CtlResult.Code
    NO_CHANGE: CtlResult.Code
    IS_MASTER: CtlResult.Code
    MASTER_ALIVE: CtlResult.Code
    ALREADY_MASTER: CtlResult.Code
    NOT_CANDIDATE: CtlResult.Code
    NO_CANDIDATE: CtlResult.Code
    BROKER_NOT_ALIVE: CtlResult.Code
    BROKER_ALIVE: CtlResult.Code
    LIVENESS_NOT_READY: CtlResult.Code
    ELECTION_IN_PROGRESS: CtlResult.Code
    NODE_ALREADY_MEMBER: CtlResult.Code
    NODE_NOT_MEMBER: CtlResult.Code
    MEMBERSHIP_CHANGE_FAILED: CtlResult.Code
    BELOW_MIN_REPLICAS: CtlResult.Code
    USER_NOT_FOUND: CtlResult.Code
    ACL_NOT_FOUND: CtlResult.Code
    OK_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    code: str
    reason: str
    def __init__(self, ok: _Optional[bool] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CtlReplica(_message.Message):
    __slots__ = ("broker_id", "address", "ha_address", "learner", "alive", "epoch", "max_offset", "confirm_offset", "election_priority", "heartbeat_age_s")
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MAX_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    ELECTION_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    broker_id: int
    address: str
    ha_address: str
    learner: bool
    alive: bool
    epoch: int
    max_offset: int
    confirm_offset: int
    election_priority: int
    heartbeat_age_s: float
    def __init__(self, broker_id: _Optional[int] = ..., address: _Optional[str] = ..., ha_address: _Optional[str] = ..., learner: _Optional[bool] = ..., alive: _Optional[bool] = ..., epoch: _Optional[int] = ..., max_offset: _Optional[int] = ..., confirm_offset: _Optional[int] = ..., election_priority: _Optional[int] = ..., heartbeat_age_s: _Optional[float] = ...) -> None: ...

class CtlSetView(_message.Message):
    __slots__ = ("cluster", "broker_set", "master_id", "master_address", "master_ha_address", "master_epoch", "sync_state_set", "sss_epoch", "replicas", "next_broker_id", "exists", "controllers")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    MASTER_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MASTER_HA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MASTER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SYNC_STATE_SET_FIELD_NUMBER: _ClassVar[int]
    SSS_EPOCH_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    NEXT_BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    master_id: int
    master_address: str
    master_ha_address: str
    master_epoch: int
    sync_state_set: _containers.RepeatedScalarFieldContainer[int]
    sss_epoch: int
    replicas: _containers.RepeatedCompositeFieldContainer[CtlReplica]
    next_broker_id: int
    exists: bool
    controllers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., master_id: _Optional[int] = ..., master_address: _Optional[str] = ..., master_ha_address: _Optional[str] = ..., master_epoch: _Optional[int] = ..., sync_state_set: _Optional[_Iterable[int]] = ..., sss_epoch: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[CtlReplica, _Mapping]]] = ..., next_broker_id: _Optional[int] = ..., exists: _Optional[bool] = ..., controllers: _Optional[_Iterable[str]] = ...) -> None: ...

class CtlSetKey(_message.Message):
    __slots__ = ("cluster", "broker_set")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ...) -> None: ...

class CtlGetNextBrokerIdRequest(_message.Message):
    __slots__ = ("cluster", "broker_set")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ...) -> None: ...

class CtlGetNextBrokerIdReply(_message.Message):
    __slots__ = ("next_broker_id",)
    NEXT_BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    next_broker_id: int
    def __init__(self, next_broker_id: _Optional[int] = ...) -> None: ...

class CtlApplyBrokerIdRequest(_message.Message):
    __slots__ = ("cluster", "broker_set", "broker_id", "check_code")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    CHECK_CODE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    broker_id: int
    check_code: str
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., broker_id: _Optional[int] = ..., check_code: _Optional[str] = ...) -> None: ...

class CtlApplyBrokerIdReply(_message.Message):
    __slots__ = ("result", "broker_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    result: CtlResult
    broker_id: int
    def __init__(self, result: _Optional[_Union[CtlResult, _Mapping]] = ..., broker_id: _Optional[int] = ...) -> None: ...

class CtlRegisterBrokerRequest(_message.Message):
    __slots__ = ("cluster", "broker_set", "broker_id", "address", "ha_address", "learner", "check_code")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    CHECK_CODE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    broker_id: int
    address: str
    ha_address: str
    learner: bool
    check_code: str
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., broker_id: _Optional[int] = ..., address: _Optional[str] = ..., ha_address: _Optional[str] = ..., learner: _Optional[bool] = ..., check_code: _Optional[str] = ...) -> None: ...

class CtlRegisterBrokerReply(_message.Message):
    __slots__ = ("result", "view")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    result: CtlResult
    view: CtlSetView
    def __init__(self, result: _Optional[_Union[CtlResult, _Mapping]] = ..., view: _Optional[_Union[CtlSetView, _Mapping]] = ...) -> None: ...

class CtlHeartbeatRequest(_message.Message):
    __slots__ = ("cluster", "broker_set", "broker_id", "epoch", "max_offset", "confirm_offset", "election_priority", "seq", "address")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MAX_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    ELECTION_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    broker_id: int
    epoch: int
    max_offset: int
    confirm_offset: int
    election_priority: int
    seq: int
    address: str
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., broker_id: _Optional[int] = ..., epoch: _Optional[int] = ..., max_offset: _Optional[int] = ..., confirm_offset: _Optional[int] = ..., election_priority: _Optional[int] = ..., seq: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class CtlHeartbeatReply(_message.Message):
    __slots__ = ("view",)
    VIEW_FIELD_NUMBER: _ClassVar[int]
    view: CtlSetView
    def __init__(self, view: _Optional[_Union[CtlSetView, _Mapping]] = ...) -> None: ...

class CtlSessionEvent(_message.Message):
    __slots__ = ("ack_seq", "view", "reason")
    ACK_SEQ_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ack_seq: int
    view: CtlSetView
    reason: str
    def __init__(self, ack_seq: _Optional[int] = ..., view: _Optional[_Union[CtlSetView, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class CtlGetReplicaInfoRequest(_message.Message):
    __slots__ = ("cluster", "broker_set")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ...) -> None: ...

class CtlAlterSyncStateSetRequest(_message.Message):
    __slots__ = ("cluster", "broker_set", "master_id", "master_epoch", "new_sync_state_set", "sss_epoch")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    MASTER_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    NEW_SYNC_STATE_SET_FIELD_NUMBER: _ClassVar[int]
    SSS_EPOCH_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    master_id: int
    master_epoch: int
    new_sync_state_set: _containers.RepeatedScalarFieldContainer[int]
    sss_epoch: int
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., master_id: _Optional[int] = ..., master_epoch: _Optional[int] = ..., new_sync_state_set: _Optional[_Iterable[int]] = ..., sss_epoch: _Optional[int] = ...) -> None: ...

class CtlAlterSyncStateSetReply(_message.Message):
    __slots__ = ("result", "sync_state_set", "sss_epoch")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SYNC_STATE_SET_FIELD_NUMBER: _ClassVar[int]
    SSS_EPOCH_FIELD_NUMBER: _ClassVar[int]
    result: CtlResult
    sync_state_set: _containers.RepeatedScalarFieldContainer[int]
    sss_epoch: int
    def __init__(self, result: _Optional[_Union[CtlResult, _Mapping]] = ..., sync_state_set: _Optional[_Iterable[int]] = ..., sss_epoch: _Optional[int] = ...) -> None: ...

class CtlElectMasterRequest(_message.Message):
    __slots__ = ("cluster", "broker_set", "broker_id", "designate", "handoff")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    DESIGNATE_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    broker_id: int
    designate: bool
    handoff: bool
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., broker_id: _Optional[int] = ..., designate: _Optional[bool] = ..., handoff: _Optional[bool] = ...) -> None: ...

class CtlElectMasterReply(_message.Message):
    __slots__ = ("result", "view")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    result: CtlResult
    view: CtlSetView
    def __init__(self, result: _Optional[_Union[CtlResult, _Mapping]] = ..., view: _Optional[_Union[CtlSetView, _Mapping]] = ...) -> None: ...

class CtlCleanBrokerDataRequest(_message.Message):
    __slots__ = ("cluster", "broker_set", "broker_ids")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    BROKER_IDS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    broker_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., broker_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class CtlCleanBrokerDataReply(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: CtlResult
    def __init__(self, result: _Optional[_Union[CtlResult, _Mapping]] = ...) -> None: ...

class CtlRemoveReplicaRequest(_message.Message):
    __slots__ = ("cluster", "broker_set", "broker_id")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    broker_id: int
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., broker_id: _Optional[int] = ...) -> None: ...

class CtlRemoveReplicaReply(_message.Message):
    __slots__ = ("result", "view")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    result: CtlResult
    view: CtlSetView
    def __init__(self, result: _Optional[_Union[CtlResult, _Mapping]] = ..., view: _Optional[_Union[CtlSetView, _Mapping]] = ...) -> None: ...

class CtlGetSyncStateDataRequest(_message.Message):
    __slots__ = ("sets",)
    SETS_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[CtlSetKey]
    def __init__(self, sets: _Optional[_Iterable[_Union[CtlSetKey, _Mapping]]] = ...) -> None: ...

class CtlGetSyncStateDataReply(_message.Message):
    __slots__ = ("sets",)
    SETS_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[CtlSetView]
    def __init__(self, sets: _Optional[_Iterable[_Union[CtlSetView, _Mapping]]] = ...) -> None: ...

class CtlGetMetadataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ControllerNode(_message.Message):
    __slots__ = ("raft_address", "address", "connected")
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    raft_address: str
    address: str
    connected: bool
    def __init__(self, raft_address: _Optional[str] = ..., address: _Optional[str] = ..., connected: _Optional[bool] = ...) -> None: ...

class CtlGetMetadataReply(_message.Message):
    __slots__ = ("leader_address", "leader_raft_address", "self_raft_address", "term", "commit_index", "last_applied", "peers", "sets", "liveness_ready", "controllers", "retired", "joining")
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEADER_RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SELF_RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLIED_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_READY_FIELD_NUMBER: _ClassVar[int]
    CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    JOINING_FIELD_NUMBER: _ClassVar[int]
    leader_address: str
    leader_raft_address: str
    self_raft_address: str
    term: int
    commit_index: int
    last_applied: int
    peers: _containers.RepeatedCompositeFieldContainer[ControllerNode]
    sets: _containers.RepeatedCompositeFieldContainer[CtlSetKey]
    liveness_ready: bool
    controllers: _containers.RepeatedScalarFieldContainer[str]
    retired: bool
    joining: bool
    def __init__(self, leader_address: _Optional[str] = ..., leader_raft_address: _Optional[str] = ..., self_raft_address: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., last_applied: _Optional[int] = ..., peers: _Optional[_Iterable[_Union[ControllerNode, _Mapping]]] = ..., sets: _Optional[_Iterable[_Union[CtlSetKey, _Mapping]]] = ..., liveness_ready: _Optional[bool] = ..., controllers: _Optional[_Iterable[str]] = ..., retired: _Optional[bool] = ..., joining: _Optional[bool] = ...) -> None: ...

class CtlAddNodeRequest(_message.Message):
    __slots__ = ("raft_address", "address")
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    raft_address: str
    address: str
    def __init__(self, raft_address: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class CtlRemoveNodeRequest(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class CtlMembershipReply(_message.Message):
    __slots__ = ("result", "members")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    result: CtlResult
    members: _containers.RepeatedCompositeFieldContainer[ControllerNode]
    def __init__(self, result: _Optional[_Union[CtlResult, _Mapping]] = ..., members: _Optional[_Iterable[_Union[ControllerNode, _Mapping]]] = ...) -> None: ...

class CtlGetHistoryRequest(_message.Message):
    __slots__ = ("cluster", "broker_set", "limit")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    limit: int
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class CtlMasterChange(_message.Message):
    __slots__ = ("cluster", "broker_set", "master_epoch", "master_id", "old_master_id", "reason", "time_ms", "old_master_last_heartbeat_ms", "sync_state_set")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    MASTER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    MASTER_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_MASTER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    OLD_MASTER_LAST_HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    SYNC_STATE_SET_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    master_epoch: int
    master_id: int
    old_master_id: int
    reason: str
    time_ms: int
    old_master_last_heartbeat_ms: int
    sync_state_set: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., master_epoch: _Optional[int] = ..., master_id: _Optional[int] = ..., old_master_id: _Optional[int] = ..., reason: _Optional[str] = ..., time_ms: _Optional[int] = ..., old_master_last_heartbeat_ms: _Optional[int] = ..., sync_state_set: _Optional[_Iterable[int]] = ...) -> None: ...

class CtlGetHistoryReply(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[CtlMasterChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[CtlMasterChange, _Mapping]]] = ...) -> None: ...

class CtlUser(_message.Message):
    __slots__ = ("access_key", "secret", "admin")
    ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    access_key: str
    secret: str
    admin: bool
    def __init__(self, access_key: _Optional[str] = ..., secret: _Optional[str] = ..., admin: _Optional[bool] = ...) -> None: ...

class CtlAclEntry(_message.Message):
    __slots__ = ("access_key", "resource", "actions", "decision")
    ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    access_key: str
    resource: str
    actions: _containers.RepeatedScalarFieldContainer[str]
    decision: str
    def __init__(self, access_key: _Optional[str] = ..., resource: _Optional[str] = ..., actions: _Optional[_Iterable[str]] = ..., decision: _Optional[str] = ...) -> None: ...

class CtlAuthUpsertUserRequest(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: CtlUser
    def __init__(self, user: _Optional[_Union[CtlUser, _Mapping]] = ...) -> None: ...

class CtlAuthDeleteUserRequest(_message.Message):
    __slots__ = ("access_key",)
    ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    access_key: str
    def __init__(self, access_key: _Optional[str] = ...) -> None: ...

class CtlAuthSetAclRequest(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: CtlAclEntry
    def __init__(self, entry: _Optional[_Union[CtlAclEntry, _Mapping]] = ...) -> None: ...

class CtlAuthDeleteAclRequest(_message.Message):
    __slots__ = ("access_key", "resource")
    ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    access_key: str
    resource: str
    def __init__(self, access_key: _Optional[str] = ..., resource: _Optional[str] = ...) -> None: ...

class CtlAuthReply(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: CtlResult
    def __init__(self, result: _Optional[_Union[CtlResult, _Mapping]] = ...) -> None: ...

class CtlAuthListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CtlAuthListReply(_message.Message):
    __slots__ = ("users", "entries", "version")
    USERS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[CtlUser]
    entries: _containers.RepeatedCompositeFieldContainer[CtlAclEntry]
    version: int
    def __init__(self, users: _Optional[_Iterable[_Union[CtlUser, _Mapping]]] = ..., entries: _Optional[_Iterable[_Union[CtlAclEntry, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class CtlAuthSnapshotRequest(_message.Message):
    __slots__ = ("known_version",)
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    known_version: int
    def __init__(self, known_version: _Optional[int] = ...) -> None: ...

class CtlAuthSnapshotReply(_message.Message):
    __slots__ = ("unchanged", "version", "users", "entries")
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    unchanged: bool
    version: int
    users: _containers.RepeatedCompositeFieldContainer[CtlUser]
    entries: _containers.RepeatedCompositeFieldContainer[CtlAclEntry]
    def __init__(self, unchanged: _Optional[bool] = ..., version: _Optional[int] = ..., users: _Optional[_Iterable[_Union[CtlUser, _Mapping]]] = ..., entries: _Optional[_Iterable[_Union[CtlAclEntry, _Mapping]]] = ...) -> None: ...
