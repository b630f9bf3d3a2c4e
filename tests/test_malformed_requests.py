"""Undecodable request bytes get BAD_REQUEST with `orbitmq-error` from the name server and the
controller (not grpc's bare UNKNOWN), and the server keeps serving; real processes."""

from __future__ import annotations

import grpc
import pytest

from orbitmq.common import net
from orbitmq.protos import controller_pb2, namesrv_pb2

pytestmark = pytest.mark.process

GARBAGE = b"\xff\xff\xff\xff\x0f" + b"A" * 3000


def _raw(addr: str, method: str, body: bytes) -> bytes:
    ch = grpc.insecure_channel(addr)
    call = ch.unary_unary(method, request_serializer=lambda x: x, response_deserializer=lambda x: x)
    return call(body, timeout=10)


@pytest.mark.parametrize("kind", ["namesrv", "controller"])
def test_garbage_gets_bad_request_and_the_server_keeps_serving(procs, tmp_path, kind):
    addr = f"127.0.0.1:{net.free_port()}"
    if kind == "namesrv":
        procs.start("ns", ["namesrv", "--listen", addr])
        method, good = "/orbitmq.v1.NameServer/GetClusterInfo", namesrv_pb2.GetClusterInfoRequest()
    else:
        procs.start("c", ["controller", "--listen", addr, "--raft-addr", f"127.0.0.1:{net.free_port()}",
                          "--data-dir", str(tmp_path / "c")])
        method, good = "/orbitmq.v1.Controller/GetMetadata", controller_pb2.CtlGetMetadataRequest()
    net.wait_for_port(addr, 30)
    with pytest.raises(grpc.RpcError) as e:
        _raw(addr, method, GARBAGE)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(e.value.trailing_metadata())["orbitmq-error"] == "BAD_REQUEST"
    assert "malformed request" in e.value.details() and len(e.value.details()) < 400
    _raw(addr, method, good.SerializeToString())   # still serving
