from orbitmq.protos import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TxPrepareRequest(_message.Message):
    __slots__ = ("message", "check_after_ms")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHECK_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    message: _common_pb2.Message
    check_after_ms: int
    def __init__(self, message: _Optional[_Union[_common_pb2.Message, _Mapping]] = ..., check_after_ms: _Optional[int] = ...) -> None: ...

class TxPrepareResponse(_message.Message):
    __slots__ = ("transaction_id", "msg_id")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    msg_id: str
    def __init__(self, transaction_id: _Optional[str] = ..., msg_id: _Optional[str] = ...) -> None: ...

class TxEndRequest(_message.Message):
    __slots__ = ("transaction_id", "topic", "commit")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    topic: str
    commit: bool
    def __init__(self, transaction_id: _Optional[str] = ..., topic: _Optional[str] = ..., commit: _Optional[bool] = ...) -> None: ...

class TxEndResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TxDueRequest(_message.Message):
    __slots__ = ("recheck_after_ms", "max_checks")
    RECHECK_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHECKS_FIELD_NUMBER: _ClassVar[int]
    recheck_after_ms: int
    max_checks: int
    def __init__(self, recheck_after_ms: _Optional[int] = ..., max_checks: _Optional[int] = ...) -> None: ...

class TxDueResponse(_message.Message):
    __slots__ = ("transaction_ids", "messages")
    TRANSACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    transaction_ids: _containers.RepeatedScalarFieldContainer[str]
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    def __init__(self, transaction_ids: _Optional[_Iterable[str]] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ...) -> None: ...

class PopRequest(_message.Message):
    __slots__ = ("group", "topic", "start_queue_id", "batch", "invisible_ms", "tags", "poll_ms")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    START_QUEUE_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    INVISIBLE_MS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    POLL_MS_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    start_queue_id: int
    batch: int
    invisible_ms: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    poll_ms: int
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ..., start_queue_id: _Optional[int] = ..., batch: _Optional[int] = ..., invisible_ms: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., poll_ms: _Optional[int] = ...) -> None: ...

class PoppedMessage(_message.Message):
    __slots__ = ("message", "handle", "attempt", "visible_at_ms")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    message: _common_pb2.Message
    handle: str
    attempt: int
    visible_at_ms: int
    def __init__(self, message: _Optional[_Union[_common_pb2.Message, _Mapping]] = ..., handle: _Optional[str] = ..., attempt: _Optional[int] = ..., visible_at_ms: _Optional[int] = ...) -> None: ...

class PopResponse(_message.Message):
    __slots__ = ("messages", "now_ms")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[PoppedMessage]
    now_ms: int
    def __init__(self, messages: _Optional[_Iterable[_Union[PoppedMessage, _Mapping]]] = ..., now_ms: _Optional[int] = ...) -> None: ...

class PopAckRequest(_message.Message):
    __slots__ = ("group", "topic", "handles")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    handles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ..., handles: _Optional[_Iterable[str]] = ...) -> None: ...

class PopAckResponse(_message.Message):
    __slots__ = ("codes", "messages")
    CODES_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    messages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, codes: _Optional[_Iterable[str]] = ..., messages: _Optional[_Iterable[str]] = ...) -> None: ...

class PopChangeInvisibleRequest(_message.Message):
    __slots__ = ("group", "topic", "handle", "invisible_ms")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    INVISIBLE_MS_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    handle: str
    invisible_ms: int
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ..., handle: _Optional[str] = ..., invisible_ms: _Optional[int] = ...) -> None: ...

class PopChangeInvisibleResponse(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    def __init__(self, handle: _Optional[str] = ...) -> None: ...

class PopDeadLetterRequest(_message.Message):
    __slots__ = ("group", "topic", "handle", "attempts")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    handle: str
    attempts: int
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ..., handle: _Optional[str] = ..., attempts: _Optional[int] = ...) -> None: ...

class PopDeadLetterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GroupSettingsRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class GroupSettingsResponse(_message.Message):
    __slots__ = ("fifo", "max_attempts")
    FIFO_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    fifo: bool
    max_attempts: int
    def __init__(self, fifo: _Optional[bool] = ..., max_attempts: _Optional[int] = ...) -> None: ...
