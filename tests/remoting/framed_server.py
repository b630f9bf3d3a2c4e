"""A small framed server for client tests: a real TCP socket on loopback that accepts one
connection, answers HELLO itself and hands every request to `on_request` (common/framing_conn
ServerSide decodes them)."""

from __future__ import annotations

import socket
import threading

from orbitmq.common.framing_conn import Hello, Request, ServerSide


class OneConnServer:
    """Subclasses answer requests in `on_request` (on the server's thread)."""

    def __init__(self) -> None:
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.lsock.getsockname()[1]}"
        self.side = ServerSide()
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def on_request(self, req: Request) -> None:
        raise NotImplementedError

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
                else:
                    self.on_request(ev)

    def close(self) -> None:
        for s in (self.conn, self.lsock):
            if s is not None:
                s.close()
