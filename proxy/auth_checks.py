"""What each RocketMQ 5 proxy RPC needs from the signed user (pure), after RocketMQ's ACL 2.0
table: SendMessage, EndTransaction, RecallMessage = pub on the topic; QueryRoute = pub or sub on
it; receive, ack, dead-letter forwarding, assignments, pull and offsets = sub on the group and the
topic; ChangeInvisibleDuration and a consumer's Heartbeat / NotifyClientTermination = sub on the
group; QueryOffset = sub on the topic; Telemetry (a stream) and a producer's Heartbeat = a valid
signature only. Names are OrbitMQ's (namespace `ns` -> `ns%name`), as in ACL resources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from orbitmq.common.acl import Action, Check, ResourceType
from orbitmq.common.request_auth_server import Need

SERVICE = "/apache.rocketmq.v2.MessagingService/"
T, G = ResourceType.TOPIC, ResourceType.GROUP
PUB, SUB = Action.PUB, Action.SUB


def name(res: Any, md: Mapping[str, str]) -> str:
    ns = res.resource_namespace or md.get("x-mq-namespace", "")
    return f"{ns}%{res.name}" if ns else res.name


def _gt(group: Any, topic: Any, md: Mapping[str, str]) -> Need:
    return Need((Check(G, name(group, md), SUB), Check(T, name(topic, md), SUB)))


def _group_if_any(r: Any, md: Mapping[str, str]) -> Need:
    return Need((Check(G, name(r.group, md), SUB),)) if r.HasField("group") and r.group.name else Need()


_NEEDS: dict[str, Callable[[Any, Mapping[str, str]], Need]] = {
    "QueryRoute": lambda r, md: Need(any_checks=(Check(T, name(r.topic, md), PUB), Check(T, name(r.topic, md), SUB))),
    "Heartbeat": _group_if_any,
    "NotifyClientTermination": _group_if_any,
    "SendMessage": lambda r, md: Need(tuple(Check(T, name(m.topic, md), PUB) for m in r.messages)),
    "EndTransaction": lambda r, md: Need((Check(T, name(r.topic, md), PUB),)),
    "RecallMessage": lambda r, md: Need((Check(T, name(r.topic, md), PUB),)),
    "QueryAssignment": lambda r, md: _gt(r.group, r.topic, md),
    "ReceiveMessage": lambda r, md: _gt(r.group, r.message_queue.topic, md),
    "AckMessage": lambda r, md: _gt(r.group, r.topic, md),
    "ForwardMessageToDeadLetterQueue": lambda r, md: _gt(r.group, r.topic, md),
    "PullMessage": lambda r, md: _gt(r.group, r.message_queue.topic, md),
    "UpdateOffset": lambda r, md: _gt(r.group, r.message_queue.topic, md),
    "GetOffset": lambda r, md: _gt(r.group, r.message_queue.topic, md),
    "SyncLiteSubscription": lambda r, md: _gt(r.group, r.topic, md),
    "QueryOffset": lambda r, md: Need((Check(T, name(r.message_queue.topic, md), SUB),)),
    "ChangeInvisibleDuration": lambda r, md: Need((Check(G, name(r.group, md), SUB),)),
}


def need_of(method: str, request: Any, md: Mapping[str, str]) -> Need | None:
    if not method.startswith(SERVICE):
        return None
    if request is None:
        return Need()
    fn = _NEEDS.get(method[len(SERVICE):])
    return fn(request, md) if fn is not None else Need(admin_only=True)
