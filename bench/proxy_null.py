"""Helper of `orbitmq bench proxy`: a MessagingService that does nothing (an OK answer to every send).

Run as `python -m orbitmq.bench.proxy_null --listen 127.0.0.1:PORT` (its own process: it uses the
official client's generated protobuf code). Sync sends of the official client against it measure
the client's own cost, an upper bound for any proxy: `official_ceiling_vs_direct` in the bench.
"""

from __future__ import annotations

import argparse
import asyncio


async def _serve(listen: str) -> None:
    import grpc
    from rocketmq.grpc_protocol import definition_pb2 as d
    from rocketmq.grpc_protocol import service_pb2 as s
    from rocketmq.grpc_protocol import service_pb2_grpc as sg

    from orbitmq.bench.serve import serve_until_signal

    host, _, port = listen.rpartition(":")
    ok = d.Status(code=d.OK, message="OK")
    endpoints = d.Endpoints(scheme=d.IPv4, addresses=[d.Address(host=host, port=int(port))])

    class Null(sg.MessagingServiceServicer):
        async def QueryRoute(self, request, context):  # noqa: N802
            return s.QueryRouteResponse(status=ok, message_queues=[d.MessageQueue(
                topic=request.topic, id=0, permission=d.READ_WRITE, accept_message_types=[d.NORMAL],
                broker=d.Broker(name="null", id=0, endpoints=endpoints))])

        async def Heartbeat(self, request, context):  # noqa: N802
            return s.HeartbeatResponse(status=ok)

        async def SendMessage(self, request, context):  # noqa: N802
            return s.SendMessageResponse(status=ok, entries=[
                s.SendResultEntry(status=ok, message_id=m.system_properties.message_id) for m in request.messages])

        async def Telemetry(self, request_iterator, context):  # noqa: N802
            async for _ in request_iterator:
                pass
            return
            yield  # a stream that answers nothing

        async def NotifyClientTermination(self, request, context):  # noqa: N802
            return s.NotifyClientTerminationResponse(status=ok)

    server = grpc.aio.server()
    sg.add_MessagingServiceServicer_to_server(Null(), server)
    await serve_until_signal(server, listen)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", required=True)
    asyncio.run(_serve(p.parse_args().listen))


if __name__ == "__main__":
    main()
