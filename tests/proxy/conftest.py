"""Fixtures for proxy tests: a real `orbitmq proxy` process, and the official RocketMQ 5 Python client.

The test process imports the official client (`rocketmq`) but never OrbitMQ's own
`apache.rocketmq.v2` generated code (both register the same protobuf names in one pool).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from orbitmq.common import net


class ProxyProc:
    def __init__(self, procs, tmp: Path, args: list[str]) -> None:
        self.procs = procs
        self.data = tmp / "proxy-data"
        self.addr = f"127.0.0.1:{net.free_port()}"
        self.args = args
        self.child = None
        self.n = 0

    def start(self) -> str:
        self.n += 1
        self.child = self.procs.start(f"proxy-{self.n}", ["proxy", "--mode", "local", "--listen", self.addr,
                                                          "--data", str(self.data), *self.args])
        net.wait_for_port(self.addr, 60)
        return self.addr

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.child.kill9()
        else:
            self.child.stop()


@pytest.fixture
def start_proxy(procs, tmp_path):
    def start(*args: str) -> ProxyProc:
        p = ProxyProc(procs, tmp_path, list(args))
        p.start()
        return p
    return start


@pytest.fixture
def rmq():
    """The official client package, plus a registry that shuts every started client down."""
    rocketmq = pytest.importorskip("rocketmq", reason="rocketmq-python-client is in the [test] extras")
    started = []

    class R:
        mod = rocketmq

        def config(self, endpoint: str, namespace: str = ""):
            return rocketmq.ClientConfiguration(endpoint, rocketmq.Credentials(), namespace, request_timeout=10)

        def start(self, client):
            # The client makes some of its grpc.aio calls on the calling thread, bound to that thread's
            # current event loop, which it sets to its own I/O loop only when that thread creates a
            # channel. An earlier asyncio.run() on this thread (other tests) leaves it None, so a client
            # whose channel another thread created fails "no current event loop in thread 'MainThread'".
            from rocketmq.v5.client.connection.rpc_client import RpcClient

            loop = RpcClient.get_channel_io_loop()
            if loop is not None:
                asyncio.set_event_loop(loop)
            client.startup()
            started.append(client)
            return client

        def message(self, topic: str, body: bytes, **kw):
            m = rocketmq.Message()
            m.topic = topic
            m.body = body
            for k, v in kw.items():
                if k == "properties":
                    for pk, pv in v.items():
                        m.add_property(pk, pv)
                else:
                    setattr(m, k, v)
            return m

    yield R()
    for c in reversed(started):
        try:
            c.shutdown()
        except Exception:  # noqa: BLE001 - teardown of an already failed client
            pass


def receive_until(consumer, want: int, timeout: float, invisible_s: int = 30, ack: bool = True,
                  batch: int = 16) -> list:
    """Receive (acking unless told not to) until `want` messages arrived or `timeout` passed."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            msgs = consumer.receive(batch, invisible_s)
        except Exception as e:  # noqa: BLE001 - only a proxy being restarted may refuse a connection
            if "UNAVAILABLE" not in str(e) and "Connection refused" not in str(e):
                raise
            time.sleep(0.5)
            continue
        for m in msgs:
            got.append(m)
            if ack:
                consumer.ack(m)
    return got
