"""Exceptions of the storage engine. Each carries a stable `code` (a wire ErrorCode name).

Owns: the error types only; never catches or logs anything.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of all storage engine errors."""

    code = "INTERNAL"


class CorruptRecord(StoreError):
    """A record whose CRC, size, magic or placement is wrong: names the file and the offset."""

    code = "CORRUPT_DATA"

    def __init__(self, file: str, offset: int, reason: str) -> None:
        super().__init__(f"corrupt record in {file} at physical offset {offset}: {reason}")
        self.file = file
        self.offset = offset
        self.reason = reason


class OffsetMismatch(StoreError):
    """append_raw at a start that is not the log's end, or a record whose physical offset is wrong."""

    code = "BAD_REQUEST"

    def __init__(self, expected: int, got: int, what: str = "append start") -> None:
        super().__init__(f"{what}: expected offset {expected}, got {got}")
        self.expected = expected
        self.got = got


class MessageTooLarge(StoreError):
    """A record larger than a segment can hold."""

    code = "BODY_TOO_LARGE"


class StoreClosed(StoreError):
    """The store is not open."""

    code = "INTERNAL"


class BadMessage(StoreError, ValueError):
    """A message that cannot be stored (bad field values)."""

    code = "BAD_REQUEST"


class LocalWriteRefused(StoreError):
    """A local append (message, META record, snapshot) on a store that only takes replicated bytes
    (a follower or learner: its log must stay a byte-for-byte prefix of its master's), or
    replicated bytes on a store that writes locally (a master)."""

    code = "NOT_MASTER"


class EmptyBody(BadMessage):
    """A message without a body (a batch record holding one)."""

    code = "BODY_EMPTY"
