"""The lifecycle every benchmark helper server shares: listen (plaintext, through the TLS factory),
start, serve until SIGTERM or SIGINT, stop with a short grace."""

from __future__ import annotations

import asyncio
import signal

import grpc

from orbitmq.common.tls import PLAINTEXT
from orbitmq.common.tls_grpc import add_port


async def serve_until_signal(server: grpc.aio.Server, listen: str) -> None:
    if add_port(server, listen, PLAINTEXT) == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)
