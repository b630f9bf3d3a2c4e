from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_UNSPECIFIED: _ClassVar[ErrorCode]
    BAD_REQUEST: _ClassVar[ErrorCode]
    BAD_TOPIC_NAME: _ClassVar[ErrorCode]
    BAD_TAG: _ClassVar[ErrorCode]
    BAD_KEY: _ClassVar[ErrorCode]
    BODY_EMPTY: _ClassVar[ErrorCode]
    BODY_TOO_LARGE: _ClassVar[ErrorCode]
    TOPIC_NOT_FOUND: _ClassVar[ErrorCode]
    GROUP_NOT_FOUND: _ClassVar[ErrorCode]
    NO_PERMISSION: _ClassVar[ErrorCode]
    NOT_MASTER: _ClassVar[ErrorCode]
    REPLICATION_TIMEOUT: _ClassVar[ErrorCode]
    FENCED: _ClassVar[ErrorCode]
    IN_SYNC_REPLICAS_NOT_ENOUGH: _ClassVar[ErrorCode]
    FLUSH_TIMEOUT: _ClassVar[ErrorCode]
    OFFSET_MOVED: _ClassVar[ErrorCode]
    MESSAGE_NOT_FOUND: _ClassVar[ErrorCode]
    BROKER_BUSY: _ClassVar[ErrorCode]
    NOT_LEADER: _ClassVar[ErrorCode]
    STALE_EPOCH: _ClassVar[ErrorCode]
    CORRUPT_DATA: _ClassVar[ErrorCode]
    INTERNAL: _ClassVar[ErrorCode]
    TOO_MANY_REQUESTS: _ClassVar[ErrorCode]
    DISK_FULL: _ClassVar[ErrorCode]
    UNAUTHENTICATED: _ClassVar[ErrorCode]
    FORBIDDEN: _ClassVar[ErrorCode]
ERROR_UNSPECIFIED: ErrorCode
BAD_REQUEST: ErrorCode
BAD_TOPIC_NAME: ErrorCode
BAD_TAG: ErrorCode
BAD_KEY: ErrorCode
BODY_EMPTY: ErrorCode
BODY_TOO_LARGE: ErrorCode
TOPIC_NOT_FOUND: ErrorCode
GROUP_NOT_FOUND: ErrorCode
NO_PERMISSION: ErrorCode
NOT_MASTER: ErrorCode
REPLICATION_TIMEOUT: ErrorCode
FENCED: ErrorCode
IN_SYNC_REPLICAS_NOT_ENOUGH: ErrorCode
FLUSH_TIMEOUT: ErrorCode
OFFSET_MOVED: ErrorCode
MESSAGE_NOT_FOUND: ErrorCode
BROKER_BUSY: ErrorCode
NOT_LEADER: ErrorCode
STALE_EPOCH: ErrorCode
CORRUPT_DATA: ErrorCode
INTERNAL: ErrorCode
TOO_MANY_REQUESTS: ErrorCode
DISK_FULL: ErrorCode
UNAUTHENTICATED: ErrorCode
FORBIDDEN: ErrorCode

class TopicConfig(_message.Message):
    __slots__ = ("topic", "read_queues", "write_queues", "perm", "order", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    READ_QUEUES_FIELD_NUMBER: _ClassVar[int]
    WRITE_QUEUES_FIELD_NUMBER: _ClassVar[int]
    PERM_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    topic: str
    read_queues: int
    write_queues: int
    perm: int
    order: bool
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, topic: _Optional[str] = ..., read_queues: _Optional[int] = ..., write_queues: _Optional[int] = ..., perm: _Optional[int] = ..., order: _Optional[bool] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SubscriptionGroupConfig(_message.Message):
    __slots__ = ("group", "consume_enable", "broadcast_enable", "retry_max_times", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CONSUME_ENABLE_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_ENABLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_MAX_TIMES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    group: str
    consume_enable: bool
    broadcast_enable: bool
    retry_max_times: int
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, group: _Optional[str] = ..., consume_enable: _Optional[bool] = ..., broadcast_enable: _Optional[bool] = ..., retry_max_times: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("topic", "body", "tags", "keys", "properties", "msg_id", "queue_id", "queue_offset", "physical_offset", "born_timestamp", "born_host", "store_timestamp", "store_host", "reconsume_times", "flags", "sys_flag", "broker_set")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_OFFSET_FIELD_NUMBER: _ClassVar[int]
    BORN_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    BORN_HOST_FIELD_NUMBER: _ClassVar[int]
    STORE_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STORE_HOST_FIELD_NUMBER: _ClassVar[int]
    RECONSUME_TIMES_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    SYS_FLAG_FIELD_NUMBER: _ClassVar[int]
    BROKER_SET_FIELD_NUMBER: _ClassVar[int]
    topic: str
    body: bytes
    tags: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    properties: _containers.ScalarMap[str, str]
    msg_id: str
    queue_id: int
    queue_offset: int
    physical_offset: int
    born_timestamp: int
    born_host: str
    store_timestamp: int
    store_host: str
    reconsume_times: int
    flags: int
    sys_flag: int
    broker_set: str
    def __init__(self, topic: _Optional[str] = ..., body: _Optional[bytes] = ..., tags: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., properties: _Optional[_Mapping[str, str]] = ..., msg_id: _Optional[str] = ..., queue_id: _Optional[int] = ..., queue_offset: _Optional[int] = ..., physical_offset: _Optional[int] = ..., born_timestamp: _Optional[int] = ..., born_host: _Optional[str] = ..., store_timestamp: _Optional[int] = ..., store_host: _Optional[str] = ..., reconsume_times: _Optional[int] = ..., flags: _Optional[int] = ..., sys_flag: _Optional[int] = ..., broker_set: _Optional[str] = ...) -> None: ...
