"""Hidden benchmark helper for `orbitmq bench transport`: one process serving the same three
methods over grpc.aio (like the broker's gRPC port) and over the framed protocol (the broker's
`remoting_listen` shell, broker/remoting.py), on one asyncio loop:

- Empty: empty request, empty reply (the per-call cost),
- Sink: any request bytes, empty reply (bulk in the produce direction),
- Source: an 8-byte big-endian size, answered with that many bytes (bulk in the consume direction).

Run as `python -m orbitmq.bench.transport_server --grpc HOST:PORT --framed HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
from typing import Any

import grpc

from orbitmq.common.framing_methods import Method

SERVICE = "orbitmq.bench.Transport"
MAX_BYTES = 64 << 20
OPTIONS = [("grpc.max_send_message_length", MAX_BYTES), ("grpc.max_receive_message_length", MAX_BYTES),
           ("grpc.so_reuseport", 0)]
_SIZE = struct.Struct(">Q")


class Raw:
    """A protobuf stand-in for raw bytes: `FromString` and `SerializeToString` pass them through."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    @classmethod
    def FromString(cls, data: bytes) -> Raw:  # noqa: N802 - protobuf's name
        return cls(data)

    def SerializeToString(self) -> bytes:  # noqa: N802
        return self.data


# framed method codes of the bench (outside the Broker table's range, so never mistaken for one)
METHODS: dict[str, Method] = {name: Method(code, name, Raw, Raw)
                              for code, name in ((0xBE01, "Empty"), (0xBE02, "Sink"), (0xBE03, "Source"))}
FRAMED_BY_CODE: dict[int, Method] = {m.code: m for m in METHODS.values()}


def size_request(n: int) -> bytes:
    return _SIZE.pack(n)


class _Payloads:
    def __init__(self) -> None:
        self._cache: dict[int, bytes] = {}

    def of(self, request: bytes) -> bytes:
        (n,) = _SIZE.unpack_from(request) if len(request) >= 8 else (0,)
        n = min(n, MAX_BYTES - 1024)
        data = self._cache.get(n)
        if data is None:
            data = self._cache[n] = b"x" * n
        return data


class FramedService:
    """The framed side: async methods called as `method(request, context)`, like a servicer."""

    def __init__(self, payloads: _Payloads) -> None:
        self._payloads = payloads

    async def Empty(self, request: Raw, context: Any) -> Raw:  # noqa: N802
        return Raw()

    async def Sink(self, request: Raw, context: Any) -> Raw:  # noqa: N802
        return Raw()

    async def Source(self, request: Raw, context: Any) -> Raw:  # noqa: N802
        return Raw(self._payloads.of(request.data))


async def _serve(grpc_listen: str, framed_listen: str) -> None:
    from orbitmq.broker.remoting import RemotingServer

    payloads = _Payloads()

    async def empty(request: bytes, context) -> bytes:
        return b""

    async def source(request: bytes, context) -> bytes:
        return payloads.of(request)

    server = grpc.aio.server(options=OPTIONS)
    handlers = {"Empty": grpc.unary_unary_rpc_method_handler(empty),
                "Sink": grpc.unary_unary_rpc_method_handler(empty),
                "Source": grpc.unary_unary_rpc_method_handler(source)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if server.add_insecure_port(grpc_listen) == 0:
        raise OSError(f"cannot listen on {grpc_listen}")
    await server.start()
    framed = RemotingServer(FramedService(payloads), max_frame=MAX_BYTES, methods=FRAMED_BY_CODE)
    await framed.start(framed_listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await framed.stop()
    await server.stop(0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--grpc", required=True, help="gRPC listen host:port")
    p.add_argument("--framed", required=True, help="framed protocol listen host:port")
    a = p.parse_args()
    asyncio.run(_serve(a.grpc, a.framed))


if __name__ == "__main__":
    main()
