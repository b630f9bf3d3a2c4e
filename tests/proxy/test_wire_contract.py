"""Our `apache.rocketmq.v2` protos match the official Python client's on the wire.

The two sets of generated code cannot live in one process (both register `apache.rocketmq.v2.*`
in protobuf's default pool), so each side's descriptors are dumped by a child interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DUMP = r"""
import json, sys
from google.protobuf import descriptor as d
mods = sys.argv[1:]
out = {"messages": {}, "enums": {}, "services": {}}
def walk(m):
    out["messages"][m.full_name] = {f.name: [f.number, f.type, f.is_repeated, f.has_presence,
                                              (f.message_type.full_name if f.message_type else
                                               f.enum_type.full_name if f.enum_type else "")]
                                    for f in m.fields}
    for n in m.nested_types:
        walk(n)
for mod in mods:
    fd = __import__(mod, fromlist=["DESCRIPTOR"]).DESCRIPTOR
    for m in fd.message_types_by_name.values():
        walk(m)
    for e in fd.enum_types_by_name.values():
        out["enums"][e.full_name] = {v.name: v.number for v in e.values}
    for s in fd.services_by_name.values():
        out["services"][s.full_name] = {m.name: [m.input_type.full_name, m.output_type.full_name,
                                                 m.client_streaming, m.server_streaming] for m in s.methods}
print(json.dumps(out))
"""


def _dump(*modules: str) -> dict:
    r = subprocess.run([sys.executable, "-c", DUMP, *modules], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def both():
    pytest.importorskip("rocketmq.grpc_protocol", reason="rocketmq-python-client is in the [test] extras")
    ours = _dump("orbitmq.protos.rocketmq_v2_definition_pb2", "orbitmq.protos.rocketmq_v2_service_pb2")
    theirs = _dump("rocketmq.grpc_protocol.definition_pb2", "rocketmq.grpc_protocol.service_pb2")
    return ours, theirs


def test_every_message_field_matches_the_official_contract(both):
    ours, theirs = both
    assert len(ours["messages"]) > 40
    for name, fields in ours["messages"].items():
        assert name.startswith("apache.rocketmq.v2.")
        assert name in theirs["messages"], name
        for fname, spec in fields.items():
            assert theirs["messages"][name].get(fname) == spec, (name, fname, spec)


def test_fields_we_omit_are_only_the_unimplemented_extensions(both):
    ours, theirs = both
    omitted = {(m, f) for m, fs in theirs["messages"].items() if m in ours["messages"]
               for f in fs if f not in ours["messages"][m]}
    assert {f for _m, f in omitted} <= {"lite_topic", "priority", "recall_handle", "lite_subscription_quota",
                                        "max_lite_topic_size", "suspend", "notify_unsubscribe_lite_command"}


def test_enums_are_identical(both):
    ours, theirs = both
    for name, values in ours["enums"].items():
        assert theirs["enums"][name] == values, name


def test_service_methods_match(both):
    ours, theirs = both
    svc = "apache.rocketmq.v2.MessagingService"
    assert set(ours["services"]) == {svc}
    for method, spec in ours["services"][svc].items():
        assert theirs["services"][svc][method] == spec, method
    assert {"QueryRoute", "Heartbeat", "Telemetry", "SendMessage", "QueryAssignment", "ReceiveMessage",
            "AckMessage", "ChangeInvisibleDuration", "ForwardMessageToDeadLetterQueue", "EndTransaction",
            "NotifyClientTermination"} <= set(ours["services"][svc])

