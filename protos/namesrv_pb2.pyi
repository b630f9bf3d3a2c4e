from orbitmq.protos import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BrokerIdentity(_message.Message):
    __slots__ = ("cluster", "broker_set", "broker_id", "address", "instance_id")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    broker_id: int
    address: str
    instance_id: str
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., broker_id: _Optional[int] = ..., address: _Optional[str] = ..., instance_id: _Optional[str] = ...) -> None: ...

class RegisterBrokerRequest(_message.Message):
    __slots__ = ("broker", "ha_address", "is_master", "epoch", "topics", "auto_create_topics", "default_queues", "expire_after_ms", "writable", "topics_delta", "deleted_topics", "remoting_address")
    BROKER_FIELD_NUMBER: _ClassVar[int]
    HA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    IS_MASTER_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    AUTO_CREATE_TOPICS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_QUEUES_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    TOPICS_DELTA_FIELD_NUMBER: _ClassVar[int]
    DELETED_TOPICS_FIELD_NUMBER: _ClassVar[int]
    REMOTING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    broker: BrokerIdentity
    ha_address: str
    is_master: bool
    epoch: int
    topics: _containers.RepeatedCompositeFieldContainer[_common_pb2.TopicConfig]
    auto_create_topics: bool
    default_queues: int
    expire_after_ms: int
    writable: bool
    topics_delta: bool
    deleted_topics: _containers.RepeatedScalarFieldContainer[str]
    remoting_address: str
    def __init__(self, broker: _Optional[_Union[BrokerIdentity, _Mapping]] = ..., ha_address: _Optional[str] = ..., is_master: _Optional[bool] = ..., epoch: _Optional[int] = ..., topics: _Optional[_Iterable[_Union[_common_pb2.TopicConfig, _Mapping]]] = ..., auto_create_topics: _Optional[bool] = ..., default_queues: _Optional[int] = ..., expire_after_ms: _Optional[int] = ..., writable: _Optional[bool] = ..., topics_delta: _Optional[bool] = ..., deleted_topics: _Optional[_Iterable[str]] = ..., remoting_address: _Optional[str] = ...) -> None: ...

class RegisterBrokerResponse(_message.Message):
    __slots__ = ("master_address", "master_ha_address", "master_id", "full_registration_needed")
    MASTER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MASTER_HA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MASTER_ID_FIELD_NUMBER: _ClassVar[int]
    FULL_REGISTRATION_NEEDED_FIELD_NUMBER: _ClassVar[int]
    master_address: str
    master_ha_address: str
    master_id: int
    full_registration_needed: bool
    def __init__(self, master_address: _Optional[str] = ..., master_ha_address: _Optional[str] = ..., master_id: _Optional[int] = ..., full_registration_needed: _Optional[bool] = ...) -> None: ...

class UnregisterBrokerRequest(_message.Message):
    __slots__ = ("broker",)
    BROKER_FIELD_NUMBER: _ClassVar[int]
    broker: BrokerIdentity
    def __init__(self, broker: _Optional[_Union[BrokerIdentity, _Mapping]] = ...) -> None: ...

class UnregisterBrokerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KeepAlivePing(_message.Message):
    __slots__ = ("broker",)
    BROKER_FIELD_NUMBER: _ClassVar[int]
    broker: BrokerIdentity
    def __init__(self, broker: _Optional[_Union[BrokerIdentity, _Mapping]] = ...) -> None: ...

class KeepAlivePong(_message.Message):
    __slots__ = ("server_time_ms", "register_needed")
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REGISTER_NEEDED_FIELD_NUMBER: _ClassVar[int]
    server_time_ms: int
    register_needed: bool
    def __init__(self, server_time_ms: _Optional[int] = ..., register_needed: _Optional[bool] = ...) -> None: ...

class GetTopicRouteRequest(_message.Message):
    __slots__ = ("topic",)
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    topic: str
    def __init__(self, topic: _Optional[str] = ...) -> None: ...

class QueueData(_message.Message):
    __slots__ = ("broker_set", "read_queues", "write_queues", "perm")
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    READ_QUEUES_FIELD_NUMBER: _ClassVar[int]
    WRITE_QUEUES_FIELD_NUMBER: _ClassVar[int]
    PERM_FIELD_NUMBER: _ClassVar[int]
    broker_set: str
    read_queues: int
    write_queues: int
    perm: int
    def __init__(self, broker_set: _Optional[str] = ..., read_queues: _Optional[int] = ..., write_queues: _Optional[int] = ..., perm: _Optional[int] = ...) -> None: ...

class BrokerSetData(_message.Message):
    __slots__ = ("cluster", "broker_set", "replicas", "master_id", "master_address", "epoch", "remoting_addresses")
    class ReplicasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    class RemotingAddressesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MASTER_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REMOTING_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    broker_set: str
    replicas: _containers.ScalarMap[int, str]
    master_id: int
    master_address: str
    epoch: int
    remoting_addresses: _containers.ScalarMap[str, str]
    def __init__(self, cluster: _Optional[str] = ..., broker_set: _Optional[str] = ..., replicas: _Optional[_Mapping[int, str]] = ..., master_id: _Optional[int] = ..., master_address: _Optional[str] = ..., epoch: _Optional[int] = ..., remoting_addresses: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TopicRoute(_message.Message):
    __slots__ = ("topic", "queues", "broker_sets", "auto_created")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    BROKER_SETS_FIELD_NUMBER: _ClassVar[int]
    AUTO_CREATED_FIELD_NUMBER: _ClassVar[int]
    topic: str
    queues: _containers.RepeatedCompositeFieldContainer[QueueData]
    broker_sets: _containers.RepeatedCompositeFieldContainer[BrokerSetData]
    auto_created: bool
    def __init__(self, topic: _Optional[str] = ..., queues: _Optional[_Iterable[_Union[QueueData, _Mapping]]] = ..., broker_sets: _Optional[_Iterable[_Union[BrokerSetData, _Mapping]]] = ..., auto_created: _Optional[bool] = ...) -> None: ...

class GetClusterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterInfo(_message.Message):
    __slots__ = ("clusters",)
    class ClustersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: BrokerSetList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[BrokerSetList, _Mapping]] = ...) -> None: ...
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.MessageMap[str, BrokerSetList]
    def __init__(self, clusters: _Optional[_Mapping[str, BrokerSetList]] = ...) -> None: ...

class BrokerSetList(_message.Message):
    __slots__ = ("broker_sets",)
    BROKER_SETS_FIELD_NUMBER: _ClassVar[int]
    broker_sets: _containers.RepeatedCompositeFieldContainer[BrokerSetData]
    def __init__(self, broker_sets: _Optional[_Iterable[_Union[BrokerSetData, _Mapping]]] = ...) -> None: ...

class GetTopicListRequest(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    def __init__(self, cluster: _Optional[str] = ...) -> None: ...

class TopicList(_message.Message):
    __slots__ = ("topics",)
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, topics: _Optional[_Iterable[str]] = ...) -> None: ...
