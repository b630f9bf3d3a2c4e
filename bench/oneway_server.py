"""Hidden benchmark helper: a gRPC server (grpc.aio, like the broker) with two one-way methods:
`Sink` takes any request and answers empty, `Source` answers every (empty) request with
--reply-bytes bytes. Run as `python -m orbitmq.bench.oneway_server --listen 127.0.0.1:PORT`;
`orbitmq.bench.transport_oneway` measures the bulk limit of gRPC between two processes with it."""

from __future__ import annotations

import argparse
import asyncio
import os

import grpc

from orbitmq.bench.serve import serve_until_signal

SERVICE = "orbitmq.bench.OneWay"
SINK = f"/{SERVICE}/Sink"
SOURCE = f"/{SERVICE}/Source"


async def _serve(listen: str, reply_bytes: int) -> None:
    payload = os.urandom(reply_bytes)

    async def sink(request: bytes, context) -> bytes:
        return b""

    async def source(request: bytes, context) -> bytes:
        return payload

    limit = max(reply_bytes, 1 << 20) + (1 << 20)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                      ("grpc.max_send_message_length", limit)])
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Sink": grpc.unary_unary_rpc_method_handler(sink), "Source": grpc.unary_unary_rpc_method_handler(source)})
    server.add_generic_rpc_handlers((handler,))
    await serve_until_signal(server, listen)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", required=True)
    p.add_argument("--reply-bytes", type=int, default=256 * 1024)
    a = p.parse_args()
    asyncio.run(_serve(a.listen, a.reply_bytes))


if __name__ == "__main__":
    main()
