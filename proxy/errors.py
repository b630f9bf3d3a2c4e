"""Errors the proxy answers with: a protocol `Code` name plus a message saying what was wrong.

Owns the mapping from the broker's own error names (store, names, pop rules, broker wire errors)
to the most specific `apache.rocketmq.v2.Code`. Pure: no protobuf import.
"""

from __future__ import annotations

# broker ErrorCode / names / store error name -> apache.rocketmq.v2.Code name
_FROM_BROKER = {
    "BAD_TOPIC_NAME": "ILLEGAL_TOPIC",
    "BAD_TAG": "ILLEGAL_MESSAGE_TAG",
    "BAD_KEY": "ILLEGAL_MESSAGE_KEY",
    "BAD_REQUEST": "BAD_REQUEST",
    "BODY_EMPTY": "MESSAGE_BODY_EMPTY",
    "BODY_TOO_LARGE": "MESSAGE_BODY_TOO_LARGE",
    "TOPIC_NOT_FOUND": "TOPIC_NOT_FOUND",
    "GROUP_NOT_FOUND": "CONSUMER_GROUP_NOT_FOUND",
    "NO_PERMISSION": "FORBIDDEN",
    "NOT_MASTER": "HA_NOT_AVAILABLE",
    "FENCED": "HA_NOT_AVAILABLE",
    "IN_SYNC_REPLICAS_NOT_ENOUGH": "HA_NOT_AVAILABLE",
    "REPLICATION_TIMEOUT": "SLAVE_PERSISTENCE_TIMEOUT",
    "FLUSH_TIMEOUT": "MASTER_PERSISTENCE_TIMEOUT",
    "UNAVAILABLE": "PROXY_TIMEOUT",
    "UNAUTHENTICATED": "UNAUTHORIZED",
}


class ProxyError(Exception):
    """Answered as `Status(code=<code>, message=<message>)`; `code` is a protocol Code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def from_broker(name: str, message: str) -> ProxyError:
    """A broker-side error name (orbitmq-error / NameError_.code / PopError.code) as a ProxyError."""
    return ProxyError(_FROM_BROKER.get(name, name if name.isupper() else "INTERNAL_ERROR"), message)
