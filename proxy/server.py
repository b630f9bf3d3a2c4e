"""The `orbitmq proxy` process: a backend (local: embedded store) + the MessagingService gRPC server.

Owns the lifecycle: open the backend, serve gRPC on `listen`, and on SIGTERM/SIGINT stop serving,
then close the backend (flushing the embedded store). Nothing protocol-specific lives here.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc

from orbitmq.common.logs import kv
from orbitmq.protos import rocketmq_v2_service_pb2_grpc as sg
from orbitmq.proxy.config import ProxyConfig
from orbitmq.proxy.service import MessagingService

log = logging.getLogger("orbitmq.proxy")


def make_backend(config: ProxyConfig):
    if config.mode == "local":
        from orbitmq.proxy.local_backend import LocalBackend

        return LocalBackend(config)
    from orbitmq.proxy.cluster_backend import ClusterBackend

    return ClusterBackend(config)


async def serve(config: ProxyConfig) -> None:
    """Run until SIGTERM/SIGINT."""
    backend = make_backend(config)
    await backend.open()
    from orbitmq.proxy.auth import start_auth
    auth, auth_cache = await start_auth(config)   # request signatures + ACL when auth_enabled
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", config.max_message_size + (1 << 20)),
                                      ("grpc.max_send_message_length", -1)], interceptors=[auth] if auth else None)
    service = MessagingService(config, backend)
    sg.add_MessagingServiceServicer_to_server(service, server)
    if server.add_insecure_port(config.listen) == 0:
        await backend.close()
        raise OSError(f"cannot listen on {config.listen}")
    await server.start()
    bg = [asyncio.create_task(t) for t in service.background()]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("proxy listening %s", kv(addr=config.listen, mode=config.mode, auth=config.auth_enabled))
    try:
        await stop.wait()
    finally:
        log.info("proxy stopping")
        for t in bg:
            t.cancel()
        await server.stop(grace=1.0)
        if auth_cache is not None:
            await auth_cache.stop()
        await backend.close()
        log.info("proxy stopped")
