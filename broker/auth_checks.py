"""What each broker RPC needs from the signed user (pure): `need_of(method, request, metadata)`.

Producers: SendMessage = pub on the topic. Consumers: pull, offsets, heartbeats, consumer lists and
stats = sub on the group and on the topic(s). Queries by key or offset range = sub on the topic.
CreateTopic / CreateSubscriptionGroup = create on it; DeleteTopic / DeleteSubscriptionGroup = admin
on it; ListTopics, GetBrokerStatus and QueryMessageById (no topic named) = admin users only.
BrokerPop (the proxy's pop and transaction calls) = cluster nodes only (the proxy checked the user).
With `request` None (probing, or a stream's start) the answer says only whether the method is
protected. Anything else of these services not listed is admin only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orbitmq.common.acl import Action, Check, ResourceType
from orbitmq.common.request_auth_server import Need

BROKER = "/orbitmq.v1.Broker/"
BROKER_POP = "/orbitmq.v1.BrokerPop/"
T, G = ResourceType.TOPIC, ResourceType.GROUP
PUB, SUB, CREATE, ADMIN = Action.PUB, Action.SUB, Action.CREATE, Action.ADMIN


def _need(*checks: Check) -> Need:
    return Need(tuple(checks))


def _group_topic(r: Any) -> Need:
    return _need(Check(G, r.group, SUB), Check(T, r.topic, SUB))


_BROKER: dict[str, Callable[[Any], Need]] = {
    "SendMessage": lambda r: _need(Check(T, r.topic, PUB)),
    "PullMessage": _group_topic,
    "CommitOffset": _group_topic,
    "QueryOffset": _group_topic,
    "ConsumerHeartbeat": lambda r: _need(Check(G, r.group, SUB), *(Check(T, s.topic, SUB) for s in r.subscriptions)),
    "UnregisterConsumer": lambda r: _need(Check(G, r.group, SUB)),
    "GetConsumerList": lambda r: _need(Check(G, r.group, SUB)),
    "GetConsumeStats": lambda r: _need(Check(G, r.group, SUB), *([Check(T, r.topic, SUB)] if r.topic else [])),
    "GetOffsetRange": lambda r: _need(Check(T, r.topic, SUB)),
    "QueryMessageByKey": lambda r: _need(Check(T, r.topic, SUB)),
    "CreateTopic": lambda r: _need(Check(T, r.config.topic, CREATE)),
    "CreateSubscriptionGroup": lambda r: _need(Check(G, r.config.group, CREATE)),
    "DeleteTopic": lambda r: _need(Check(T, r.topic, ADMIN)),
    "DeleteSubscriptionGroup": lambda r: _need(Check(G, r.group, ADMIN)),
}


def need_of(method: str, request: Any, metadata: Any = None) -> Need | None:
    if method.startswith(BROKER_POP):
        return Need(node_only=True)
    if not method.startswith(BROKER):
        return None
    if request is None:
        return Need()
    fn = _BROKER.get(method[len(BROKER):])
    return fn(request) if fn is not None else Need(admin_only=True)
