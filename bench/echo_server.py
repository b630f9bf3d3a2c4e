"""Hidden benchmark helper: a gRPC server (grpc.aio, like the broker) with one unary method that
returns its request bytes. Run as `python -m orbitmq.bench.echo_server --listen 127.0.0.1:PORT`;
the benchmarks call it to measure an empty gRPC round trip between two processes."""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

from orbitmq.common.tls import PLAINTEXT
from orbitmq.common.tls_grpc import add_port

SERVICE = "orbitmq.bench.Echo"
METHOD = f"/{SERVICE}/Call"


async def _serve(listen: str) -> None:
    async def call(request: bytes, context) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(call)})
    server.add_generic_rpc_handlers((handler,))
    add_port(server, listen, PLAINTEXT)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", required=True)
    asyncio.run(_serve(p.parse_args().listen))


if __name__ == "__main__":
    main()
