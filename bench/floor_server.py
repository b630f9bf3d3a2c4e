"""Hidden benchmark helper: the bare-socket processes of bench/floor.py (no OrbitMQ code).

Run as `python -m orbitmq.bench.floor_server --listen 127.0.0.1:PORT` for the server: an asyncio
loop (like the broker's) reading length-prefixed frames (4-byte little-endian length, then the
payload). A connection whose first frame is `CONSUMER` receives every later frame of the other
connections; each other frame is answered with a 4-byte empty frame (the acknowledgement) and then
forwarded to the consumer, if one is connected (the relay). With no consumer that is an echo of an
empty acknowledgement: the round trip of a sync send with no work.

`python -m orbitmq.bench.floor_server --consume ADDR --count N --out F` is the consumer: a plain
blocking socket reading frames, recording per frame the time since the send time in its first
8 bytes (ms), written as JSON to F after N frames or --seconds. Prints READY once registered."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import time

from orbitmq.common.net import split_addr

LEN = struct.Struct("<I")
CONSUMER = b"CONSUMER"
ACK = LEN.pack(0)
MAX_FRAME = 1 << 20


class _Relay(asyncio.Protocol):
    """One connection: frames in; answered with ACK and forwarded, or (the consumer) fed."""

    consumer: asyncio.Transport | None = None   # shared by every connection of the server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.buf = bytearray()
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        fwd = []
        while len(buf) >= 4:
            (n,) = LEN.unpack_from(buf)
            if n > MAX_FRAME:
                self.t.close()
                return
            if len(buf) < 4 + n:
                break
            frame = bytes(buf[:4 + n])
            del buf[:4 + n]
            if frame[4:] == CONSUMER:
                _Relay.consumer = self.t
                continue
            out.append(ACK)
            fwd.append(frame)
        if out:
            self.t.write(b"".join(out))
        c = _Relay.consumer
        if fwd and c is not None and not c.is_closing():
            c.write(b"".join(fwd))


async def _serve(listen: str) -> None:
    host, port = split_addr(listen)
    server = await asyncio.get_running_loop().create_server(_Relay, host, port, reuse_address=True)
    async with server:
        await server.serve_forever()


def read_frame(sock: socket.socket, buf: bytearray) -> bytes:
    """The next frame's payload from a blocking socket (`buf` keeps what was read beyond it)."""
    while True:
        if len(buf) >= 4:
            (n,) = LEN.unpack_from(buf)
            if len(buf) >= 4 + n:
                payload = bytes(buf[4:4 + n])
                del buf[:4 + n]
                return payload
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data


def _consume(addr: str, count: int, seconds: float, out: str) -> None:
    sock = socket.create_connection(split_addr(addr))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(LEN.pack(len(CONSUMER)) + CONSUMER)
    print("READY", flush=True)
    sock.settimeout(seconds)
    buf = bytearray()
    e2e: list[float] = []
    deadline = time.monotonic() + seconds
    try:
        while len(e2e) < count and time.monotonic() < deadline:
            payload = read_frame(sock, buf)
            now = time.time()
            (sent,) = struct.unpack_from("<d", payload)
            e2e.append((now - sent) * 1000.0)
    except (OSError, ConnectionError):
        pass
    with open(out, "w") as f:
        json.dump({"e2e_ms": e2e}, f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", default="")
    p.add_argument("--consume", default="", help="the server to consume from")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--out", default="")
    a = p.parse_args()
    if a.consume:
        _consume(a.consume, a.count, a.seconds, a.out)
    else:
        asyncio.run(_serve(a.listen))


if __name__ == "__main__":
    main()
