"""A large reply that arrives in uneven parts is read without stalling (client/remoting.py).

The client raises SO_RCVLOWAT while a large frame is missing bytes, so one wake-up reads most of
it. Linux wakes a thread sleeping in recv() only when the bytes still queued reach that low-water
mark, not counting what the sleeping recv has already copied: a blocking recv that copied part of
the frame and waits for a last small part slept until a new reply happened to arrive (pulls stalled
for their whole 7 s deadline about once in fifteen 100 MB reads). The client now waits in poll()
and reads without blocking. Against a small framed server in the test (a real TCP socket on
loopback) that sends one reply as a large first part, then, later, a small last part."""

from __future__ import annotations

import socket
import threading
import time

from orbitmq.client.remoting import RemotingClient
from orbitmq.common.framing_conn import Hello, ServerSide
from orbitmq.protos import broker_pb2

BODY = 300 * 1024
TAIL = 3000


class SplitServer:
    """Answers HELLO, then each request with a PullResponse of BODY bytes sent in two parts: all but
    the last TAIL bytes at once, the rest `pause_s` later."""

    def __init__(self, pause_s: float) -> None:
        self.pause_s = pause_s
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.lsock.getsockname()[1]}"
        self.side = ServerSide()
        self.conn: socket.socket | None = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        self.conn, _ = self.lsock.accept()
        while True:
            try:
                data = self.conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            for ev in self.side.receive(data):
                if isinstance(ev, Hello):
                    self.conn.sendall(self.side.hello_reply(ev.request_id))
                    continue
                reply = broker_pb2.PullResponse(batches=[b"x" * BODY]).SerializeToString()
                frame = self.side.reply(ev.request_id, reply)
                self.conn.sendall(frame[:-TAIL])
                time.sleep(self.pause_s)     # the client's reader is in its read by now
                self.conn.sendall(frame[-TAIL:])

    def close(self) -> None:
        for s in (self.conn, self.lsock):
            if s is not None:
                s.close()


def test_a_reply_whose_last_part_comes_later_is_read_at_once() -> None:
    server = SplitServer(pause_s=0.3)
    cli = RemotingClient(server.addr)
    try:
        for _ in range(3):
            t0 = time.monotonic()
            call = cli.future("PullMessage", broker_pb2.PullRequest(topic="T"), 20)
            got: list = []
            call.add_done_callback(lambda c, got=got: got.append(c.result()))   # read by the reader thread
            deadline = t0 + 20
            while not got and time.monotonic() < deadline:
                time.sleep(0.01)
            took = time.monotonic() - t0
            assert got, "no reply within 20 s"
            assert len(got[0].batches[0]) == BODY
            assert took < 3.0, f"the reply took {took:.1f} s (its last part came 0.3 s after the rest)"
    finally:
        cli.close()
        server.close()
