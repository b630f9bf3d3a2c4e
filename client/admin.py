"""`Admin`: topic, cluster and consumer-group management over the name servers and brokers.

Owns which brokers an admin action goes to (every master of the target cluster(s) for creates,
every broker set holding the topic for deletes) and the plain-data results the `orbitmq admin`
commands print. It never changes data outside the brokers' admin RPCs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from orbitmq.client import errors
from orbitmq.client.routes import RouteInfo
from orbitmq.client.transport import Transport
from orbitmq.common.tls import TlsConfig
from orbitmq.protos import broker_pb2, common_pb2, namesrv_pb2


@dataclass(frozen=True)
class BrokerSetRow:
    cluster: str
    broker_set: str
    master_id: int
    master_address: str
    epoch: int
    replicas: dict[int, str]


@dataclass(frozen=True)
class QueueProgress:
    topic: str
    broker_set: str
    queue_id: int
    broker_offset: int
    consumer_offset: int
    lag: int


class Admin:
    """Administration client; use as a context manager or call `close()`."""

    def __init__(self, namesrv: str | list[str], rpc_timeout_s: float = 10.0,
                 tls: TlsConfig | str | bool | None = None, credentials: Any = None) -> None:
        """`tls`: as for `Producer` (None: $ORBITMQ_TLS_*); `credentials`: sign every call as that user."""
        self.transport = Transport(namesrv, route_refresh_s=1.0, rpc_timeout_s=rpc_timeout_s, tls=tls,
                                   credentials=credentials)

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    # ---- cluster -----------------------------------------------------------------------------------

    def cluster_list(self) -> list[BrokerSetRow]:
        info = self.transport.call_namesrv("GetClusterInfo", namesrv_pb2.GetClusterInfoRequest())
        rows = []
        for cluster in sorted(info.clusters):
            for bs in info.clusters[cluster].broker_sets:
                rows.append(BrokerSetRow(cluster, bs.broker_set, bs.master_id, bs.master_address, bs.epoch,
                                         dict(sorted(bs.replicas.items()))))
        return sorted(rows, key=lambda r: (r.cluster, r.broker_set))

    def broker_status(self, address: str) -> dict[str, Any]:
        s = self.transport.call_broker(address, "GetBrokerStatus", broker_pb2.GetBrokerStatusRequest())
        return {"cluster": s.cluster, "broker_set": s.broker_set, "broker_id": s.broker_id, "role": s.role,
                "epoch": s.epoch, "max_physical_offset": s.max_physical_offset, "confirm_offset": s.confirm_offset,
                "min_physical_offset": s.min_physical_offset, "stats": dict(sorted(s.stats.items()))}

    def _masters(self, cluster: str = "", broker_sets: list[str] | None = None) -> dict[str, str]:
        out = {}
        for r in self.cluster_list():
            if cluster and r.cluster != cluster:
                continue
            if broker_sets and r.broker_set not in broker_sets:
                continue
            if r.master_address:
                out[r.broker_set] = r.master_address
        if not out:
            where = f" in cluster {cluster!r}" if cluster else ""
            sets = f" among broker sets {broker_sets}" if broker_sets else ""
            raise errors.NoRouteError(f"no broker set with a master{where}{sets}")
        return out

    # ---- topics ------------------------------------------------------------------------------------

    def create_topic(self, topic: str, queues: int = 8, *, read_queues: int | None = None,
                     write_queues: int | None = None, perm: int = 6, order: bool = False, cluster: str = "",
                     broker_sets: list[str] | None = None, wait_s: float = 10.0) -> list[str]:
        """Create or update `topic` on every master of `cluster` (or the named broker sets); waits
        up to `wait_s` until the name server routes it to all of them. Returns the broker sets."""
        cfg = common_pb2.TopicConfig(topic=topic, read_queues=read_queues or queues,
                                     write_queues=write_queues or queues, perm=perm, order=order)
        masters = self._masters(cluster, broker_sets)
        for _bset, addr in sorted(masters.items()):
            self.transport.call_broker(addr, "CreateTopic", broker_pb2.CreateTopicRequest(config=cfg))
        if wait_s > 0:
            self._wait_route(topic, lambda r: r is not None and self._counts_match(r, cfg, masters), wait_s)
        return sorted(masters)

    @staticmethod
    def _counts_match(r: RouteInfo, cfg: Any, masters: dict[str, str]) -> bool:
        for b in masters:
            w = sum(1 for q in r.write_queues if q.broker_set == b)
            rd = sum(1 for q in r.read_queues if q.broker_set == b)
            if (cfg.perm & 2 and w != cfg.write_queues) or (cfg.perm & 4 and rd != cfg.read_queues):
                return False
        return True

    def update_topic(self, topic: str, queues: int | None = None, *, read_queues: int | None = None,
                     write_queues: int | None = None, perm: int | None = None, order: bool | None = None,
                     cluster: str = "", broker_sets: list[str] | None = None, wait_s: float = 10.0) -> dict[str, Any]:
        """Change `topic` online: extend it to `broker_sets` (sets without it get its current
        counts) and/or raise its queue counts on every target set (default: the sets holding it).
        Lowering a count raises `BadRequestError` naming it (client/topic_plan.py); nothing is sent
        then. Waits up to `wait_s` until the name server routes the new counts."""
        from orbitmq.client.topic_plan import TopicPlanError, TopicSpec, plan_update

        masters = self._masters(cluster)
        unknown = sorted(set(broker_sets or ()) - set(masters))
        if unknown:
            raise errors.NoRouteError(f"no broker set with a master named {', '.join(unknown)} "
                                      f"(known: {', '.join(sorted(masters))})")
        existing = {r["broker_set"]: TopicSpec(r["read_queues"], r["write_queues"], r["perm"], r["order"])
                    for r in self.topic_configs(cluster) if r["topic"] == topic}
        try:
            plan = plan_update(topic, existing, broker_sets or [], queues=queues, read_queues=read_queues,
                               write_queues=write_queues, perm=perm, order=order)
        except TopicPlanError as e:
            raise errors.BadRequestError(str(e)) from None
        cfgs = {}
        for bset, spec in sorted(plan.items()):
            cfg = common_pb2.TopicConfig(topic=topic, read_queues=spec.read_queues, write_queues=spec.write_queues,
                                         perm=spec.perm, order=spec.order)
            self.transport.call_broker(masters[bset], "CreateTopic", broker_pb2.CreateTopicRequest(config=cfg))
            cfgs[bset] = cfg
        if wait_s > 0:
            self._wait_route(topic, lambda r: r is not None and all(
                self._counts_match(r, c, {b: masters[b]}) for b, c in cfgs.items()), wait_s)
        return {"topic": topic, "extended_to": sorted(set(plan) - set(existing)),
                "broker_sets": [{"broker_set": b, "read_queues": c.read_queues, "write_queues": c.write_queues,
                                 "perm": c.perm, "order": c.order} for b, c in sorted(cfgs.items())]}

    def _wait_route(self, topic: str, ok: Any, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                route: RouteInfo | None = self.transport.route(topic, refresh=True)
            except errors.TopicNotFoundError:
                route = None
            if ok(route):
                return
            if time.monotonic() > deadline:
                raise errors.RequestTimeoutError(f"route of {topic!r} not updated on the name server within {wait_s}s")
            time.sleep(0.1)

    def delete_topic(self, topic: str, *, cluster: str = "", wait_s: float = 10.0) -> list[str]:
        """Delete `topic` from every broker set that has it. Raises TopicNotFoundError if none."""
        deleted = []
        for bset, addr in sorted(self._masters(cluster).items()):
            try:
                self.transport.call_broker(addr, "DeleteTopic", broker_pb2.DeleteTopicRequest(topic=topic))
                deleted.append(bset)
            except errors.TopicNotFoundError:
                continue
        if not deleted:
            raise errors.TopicNotFoundError(f"topic {topic!r} does not exist on any broker set")
        if wait_s > 0:
            def gone(r: RouteInfo | None) -> bool:
                return r is None or not any(q.broker_set in deleted for q in r.read_queues + r.write_queues)
            self._wait_route(topic, gone, wait_s)
        return deleted

    def list_topics(self, cluster: str = "") -> list[str]:
        resp = self.transport.call_namesrv("GetTopicList", namesrv_pb2.GetTopicListRequest(cluster=cluster))
        return sorted(resp.topics)

    def topic_configs(self, cluster: str = "") -> list[dict[str, Any]]:
        """Every topic config on every master: [{broker_set, topic, read_queues, write_queues, perm, order}]."""
        rows = []
        for bset, addr in sorted(self._masters(cluster).items()):
            for t in self.transport.call_broker(addr, "ListTopics", broker_pb2.ListTopicsRequest()).topics:
                rows.append({"broker_set": bset, "topic": t.topic, "read_queues": t.read_queues,
                             "write_queues": t.write_queues, "perm": t.perm, "order": t.order})
        return rows

    def topic_route(self, topic: str) -> dict[str, Any]:
        r = self.transport.call_namesrv("GetTopicRoute", namesrv_pb2.GetTopicRouteRequest(topic=topic))
        return {
            "topic": r.topic, "auto_created": r.auto_created,
            "queues": [{"broker_set": q.broker_set, "read_queues": q.read_queues, "write_queues": q.write_queues,
                        "perm": q.perm} for q in r.queues],
            "broker_sets": [{"cluster": b.cluster, "broker_set": b.broker_set, "master_id": b.master_id,
                             "master_address": b.master_address, "epoch": b.epoch,
                             "replicas": {str(k): v for k, v in sorted(b.replicas.items())}} for b in r.broker_sets],
        }

    # ---- groups ------------------------------------------------------------------------------------

    def create_group(self, group: str, *, broadcast: bool = False, retry_max_times: int = 16,
                     cluster: str = "", attributes: dict[str, str] | None = None) -> list[str]:
        cfg = common_pb2.SubscriptionGroupConfig(group=group, consume_enable=True, broadcast_enable=broadcast,
                                                 retry_max_times=retry_max_times, attributes=attributes or {})
        masters = self._masters(cluster)
        for _b, addr in sorted(masters.items()):
            self.transport.call_broker(addr, "CreateSubscriptionGroup",
                                       broker_pb2.CreateSubscriptionGroupRequest(config=cfg))
        return sorted(masters)

    def delete_group(self, group: str, *, cluster: str = "") -> list[str]:
        """Delete the group everywhere it exists. Raises GroupNotFoundError if nowhere."""
        deleted = []
        for bset, addr in sorted(self._masters(cluster).items()):
            try:
                self.transport.call_broker(addr, "DeleteSubscriptionGroup",
                                           broker_pb2.DeleteSubscriptionGroupRequest(group=group))
                deleted.append(bset)
            except errors.GroupNotFoundError:
                continue
        if not deleted:
            raise errors.GroupNotFoundError(f"subscription group {group!r} does not exist on any broker set")
        return deleted

    def consumer_progress(self, group: str, topic: str = "", cluster: str = "") -> list[QueueProgress]:
        """Per queue: broker max offset, the group's committed offset (-1 none) and the lag."""
        rows = []
        for bset, addr in sorted(self._masters(cluster).items()):
            try:
                resp = self.transport.call_broker(addr, "GetConsumeStats",
                                                  broker_pb2.GetConsumeStatsRequest(group=group, topic=topic))
            except errors.TopicNotFoundError:
                continue   # this broker set does not hold the topic
            for q in resp.queues:
                rows.append(QueueProgress(q.topic, resp.broker_set or bset, q.queue_id, q.broker_offset,
                                          q.consumer_offset, q.lag))
        if topic and not rows:
            raise errors.TopicNotFoundError(f"topic {topic!r} does not exist on any broker set")
        return sorted(rows, key=lambda r: (r.topic, r.broker_set, r.queue_id))


def as_dicts(rows: list[Any]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
