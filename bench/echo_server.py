"""Hidden benchmark helper: a gRPC server (grpc.aio, like the broker) with one unary method that
returns its request bytes. Run as `python -m orbitmq.bench.echo_server --listen 127.0.0.1:PORT`;
the benchmarks call it to measure an empty gRPC round trip between two processes."""

from __future__ import annotations

import argparse
import asyncio

import grpc

from orbitmq.bench.serve import serve_until_signal

SERVICE = "orbitmq.bench.Echo"
METHOD = f"/{SERVICE}/Call"


async def _serve(listen: str) -> None:
    async def call(request: bytes, context) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(call)})
    server.add_generic_rpc_handlers((handler,))
    await serve_until_signal(server, listen)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", required=True)
    asyncio.run(_serve(p.parse_args().listen))


if __name__ == "__main__":
    main()
