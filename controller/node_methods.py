"""Which Controller RPCs only cluster nodes may call: the ones a broker makes about itself (ids,
registration, heartbeats, sync-state-set changes) and the admin writes (elect, clean, remove-replica). They must
be signed with the cluster secret when the controller has one; reads stay open."""

from __future__ import annotations

from orbitmq.protos import controller_pb2

CONTROLLER_SERVICE = controller_pb2.DESCRIPTOR.services_by_name["Controller"].full_name

CONTROLLER_NODE_METHODS = ("GetNextBrokerId", "ApplyBrokerId", "RegisterBroker", "Heartbeat", "BrokerSession",
                           "AlterSyncStateSet", "ElectMaster", "CleanBrokerData", "AddNode", "RemoveNode",
                           "RemoveReplica")


def protected_methods() -> set[str]:
    return {f"/{CONTROLLER_SERVICE}/{m}" for m in CONTROLLER_NODE_METHODS}
