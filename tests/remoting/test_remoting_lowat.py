"""A large reply that arrives in uneven parts is read without stalling (client/remoting.py).

The client raises SO_RCVLOWAT while a large frame is missing bytes, so one wake-up reads most of
it. Linux wakes a thread sleeping in recv() only when the bytes still queued reach that low-water
mark, not counting what the sleeping recv has already copied: a blocking recv that copied part of
the frame and waits for a last small part slept until a new reply happened to arrive (pulls stalled
for their whole 7 s deadline about once in fifteen 100 MB reads). The client now waits in poll()
and reads without blocking. Against a small framed server in the test (a real TCP socket on
loopback) that sends one reply as a large first part, then, later, a small last part."""

from __future__ import annotations

import time

from orbitmq.client.remoting import RemotingClient
from orbitmq.common.framing_conn import Request
from orbitmq.protos import broker_pb2
from tests.remoting.framed_server import OneConnServer

BODY = 300 * 1024
TAIL = 3000


class SplitServer(OneConnServer):
    """Answers each request with a PullResponse of BODY bytes sent in two parts: all but the last
    TAIL bytes at once, the rest `pause_s` later."""

    def __init__(self, pause_s: float) -> None:
        self.pause_s = pause_s
        super().__init__()

    def on_request(self, req: Request) -> None:
        reply = broker_pb2.PullResponse(batches=[b"x" * BODY]).SerializeToString()
        frame = self.side.reply(req.request_id, reply)
        self.conn.sendall(frame[:-TAIL])
        time.sleep(self.pause_s)     # the client's reader is in its read by now
        self.conn.sendall(frame[-TAIL:])


def test_a_reply_whose_last_part_comes_later_is_read_at_once() -> None:
    server = SplitServer(pause_s=0.3)
    cli = RemotingClient(server.addr)
    try:
        for _ in range(3):
            t0 = time.monotonic()
            call = cli.future("PullMessage", broker_pb2.PullRequest(topic="T"), 30)
            got: list = []
            call.add_done_callback(lambda c, got=got: got.append(c.result()))   # read by the reader thread
            deadline = t0 + 30
            while not got and time.monotonic() < deadline:
                time.sleep(0.01)
            took = time.monotonic() - t0
            assert got, "no reply within 30 s"
            assert len(got[0].batches[0]) == BODY
            assert took < 10.0, f"the reply took {took:.1f} s (its last part came 0.3 s after the rest; a stalled read waits for the 30 s deadline)"
    finally:
        cli.close()
        server.close()
