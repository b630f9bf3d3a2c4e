"""The `orbitmq proxy` process: a backend (local: embedded store) + the MessagingService gRPC server.

Owns the lifecycle: open the backend, serve gRPC on `listen`, and on SIGTERM/SIGINT stop serving,
then close the backend (flushing the embedded store). Nothing protocol-specific lives here.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc

from orbitmq.common import tls as tlsmod
from orbitmq.common.gc_freeze import freeze_startup_objects
from orbitmq.common.grpc_errors import MalformedRequestGuard
from orbitmq.common.health import Health
from orbitmq.common.logs import kv
from orbitmq.common.tls_grpc import add_port
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
    tls = tlsmod.from_config(config)
    log.info(tlsmod.mode_line(tls, "RocketMQ 5 proxy", config.listen))
    backend = make_backend(config)
    await backend.open()
    from orbitmq.proxy.auth import start_auth
    auth, auth_cache = await start_auth(config)   # request signatures + ACL when auth_enabled
    # undecodable request bytes: INVALID_ARGUMENT + orbitmq-error BAD_REQUEST, not a bare UNKNOWN
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", config.max_message_size + (1 << 20)),
                                      ("grpc.max_send_message_length", -1)],
                             interceptors=[MalformedRequestGuard(), *([auth] if auth else [])])
    service = MessagingService(config, backend)
    sg.add_MessagingServiceServicer_to_server(service, server)
    health = Health(server, ["apache.rocketmq.v2.MessagingService"])
    if add_port(server, config.listen, tls) == 0:
        await backend.close()
        raise OSError(f"cannot listen on {config.listen}")
    await server.start()
    await health.set(True)
    bg = [asyncio.create_task(t) for t in service.background()]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("proxy listening %s", kv(addr=config.listen, mode=config.mode, auth=config.auth_enabled))
    freeze_startup_objects()      # (common/gc_freeze.py: no full collection walks them again)
    try:
        await stop.wait()
    finally:
        log.info("proxy stopping")
        await health.set(False)
        for t in bg:
            t.cancel()
        await server.stop(grace=1.0)
        if auth_cache is not None:
            await auth_cache.stop()
        await backend.close()
        log.info("proxy stopped")
