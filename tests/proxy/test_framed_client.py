"""proxy/framed_client.py against a real broker's framed port: a send is answered with its receipt;
a broker error arrives with its `orbitmq-error` name and whether it stored nothing; a closed port
fails UNAVAILABLE with `not_stored` (the proxy may then send over gRPC); a stopped broker fails
DEADLINE_EXCEEDED once the call's deadline passes, and the connection serves again after it resumes."""

from __future__ import annotations

import asyncio
import time

import pytest

from orbitmq.common import net
from orbitmq.protos import broker_pb2, common_pb2
from orbitmq.proxy.framed_client import FramedBrokers, FramedCallError
from tests.remoting.test_remoting_process import TOPIC, remoting_addr, start

pytestmark = pytest.mark.process


def _send(topic: str, body: bytes) -> broker_pb2.SendRequest:
    return broker_pb2.SendRequest(topic=topic, queue_id=0, messages=[common_pb2.Message(topic=topic, body=body)])


def test_framed_calls_answers_errors_and_failures(procs, tmp_path):
    ns, broker, child = start(procs, tmp_path)
    raddr = remoting_addr(ns, broker)

    async def go() -> None:
        fb = FramedBrokers()
        try:
            r = await fb.call(raddr, "SendMessage", _send(TOPIC, b"one"), 10.0)
            r2 = await fb.call(raddr, "SendMessage", _send(TOPIC, b"two"), 10.0)
            assert r2.results[0].queue_offset == r.results[0].queue_offset + 1

            with pytest.raises(FramedCallError) as e:
                await fb.call(raddr, "SendMessage", _send("NoSuchTopic", b"x"), 10.0)
            assert e.value.info.code == "TOPIC_NOT_FOUND" and e.value.info.not_stored

            with pytest.raises(FramedCallError) as e:
                await fb.call(f"127.0.0.1:{net.free_port()}", "SendMessage", _send(TOPIC, b"x"), 5.0)
            assert e.value.info.code == "UNAVAILABLE" and e.value.info.not_stored

            child.pause()
            try:
                t0 = time.monotonic()
                with pytest.raises(FramedCallError) as e:
                    await fb.call(raddr, "SendMessage", _send(TOPIC, b"late"), 1.0)
                assert e.value.info.code == "DEADLINE_EXCEEDED" and not e.value.info.not_stored
                assert time.monotonic() - t0 < 30
            finally:
                child.resume()
            # the late reply is dropped; the same connection answers the next call
            r3 = await fb.call(raddr, "SendMessage", _send(TOPIC, b"three"), 30.0)
            assert r3.results[0].queue_offset >= r2.results[0].queue_offset + 1
        finally:
            await fb.close()

    asyncio.run(go())
