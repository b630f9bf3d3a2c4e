"""bench/floor.py: the bare-socket ceiling measured beside OrbitMQ, with real processes (a relay
server and a consumer, each its own process)."""

import socket
import struct

import pytest

from orbitmq.bench.floor import FloorServer
from orbitmq.bench.floor_server import LEN, MAX_FRAME, read_frame


@pytest.fixture
def floor(tmp_path):
    with FloorServer(tmp_path) as f:
        yield f


def test_round_trips_are_acknowledged_one_at_a_time(floor):
    assert floor.roundtrips_per_s(1024, 0.3, 200) > 0
    with socket.create_connection(("127.0.0.1", int(floor.addr.rsplit(":", 1)[1])), timeout=5) as s:
        s.sendall(LEN.pack(3) + b"abc" + LEN.pack(0))   # two frames in one write: two acknowledgements
        buf = bytearray()
        assert read_frame(s, buf) == b"" and read_frame(s, buf) == b""
        assert not buf


def test_relay_delivers_every_frame_with_its_latency(floor):
    e2e = floor.relay_latencies(64, 200, 1.0)
    assert len(e2e) == 200
    assert all(0 < v < 10_000 for v in e2e)


def test_an_oversized_frame_closes_the_connection(floor):
    with socket.create_connection(("127.0.0.1", int(floor.addr.rsplit(":", 1)[1])), timeout=5) as s:
        s.sendall(struct.pack("<I", MAX_FRAME + 1))
        assert s.recv(16) == b""        # closed without an acknowledgement
