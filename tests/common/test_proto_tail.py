"""common/proto_tail.py and the framed encoder's parts: a bytes field taken off the end of a
serialized message, and frames written in parts, mean exactly what the joined forms mean."""

from __future__ import annotations

import socket
import threading

from hypothesis import given
from hypothesis import strategies as st

from orbitmq.client.batch_send import BatchSend
from orbitmq.client.remoting import sendmsg_all
from orbitmq.common import framing
from orbitmq.common.framing import FrameDecoder
from orbitmq.common.proto_tail import split_tail
from orbitmq.protos import broker_pb2

requests = st.builds(broker_pb2.SendRequest, topic=st.text(max_size=20), queue_id=st.integers(-1, 1 << 30),
                     oneway=st.booleans(), batch=st.binary(max_size=400))


@given(requests)
def test_split_tail_of_any_send_request(req):
    data = req.SerializeToString()
    split = split_tail(data, 5)
    if not req.batch:
        assert split is None
        return
    head, tail = split
    assert bytes(tail) == req.batch
    rest = broker_pb2.SendRequest.FromString(head)
    assert (rest.topic, rest.queue_id, rest.oneway, rest.batch) == (req.topic, req.queue_id, req.oneway, b"")


@given(st.text(max_size=20), st.integers(-1, 1 << 30), st.binary(min_size=1, max_size=400), st.integers(0, 400))
def test_batch_send_parts_are_the_same_message(topic, qid, batch, cut):
    b = BatchSend(topic, batch[:cut], batch[cut:])    # a record's header and data, as the producer keeps them
    b.queue_id = qid
    whole = b"".join(b.payload_parts())
    assert broker_pb2.SendRequest.FromString(whole) == b.to_proto()
    assert b.to_proto() == broker_pb2.SendRequest(topic=topic, queue_id=qid, batch=batch)
    head, tail = split_tail(whole, 5)
    assert bytes(tail) == batch


@given(st.binary(max_size=60))
def test_split_tail_never_raises_on_garbage(data):
    split = split_tail(data, 5)
    if split is not None:
        assert len(split[0]) + len(split[1]) <= len(data)


@given(st.lists(st.binary(max_size=50), max_size=5), st.booleans())
def test_frames_in_parts_are_the_joined_frame(parts, crc):
    joined = b"".join(framing.encode_parts(7, 1, tuple(parts), framing.FLAG_ONEWAY, crc=crc))
    assert joined == framing.encode(7, 1, b"".join(parts), framing.FLAG_ONEWAY, crc=crc)


def test_sendmsg_all_writes_every_byte_through_partial_sends():
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)     # many partial sendmsg rounds
    payload = bytes(range(256)) * 4000
    vec = framing.encode_parts(3, 1, (b"head", payload, b""), crc=True)
    got = bytearray()

    def read() -> None:
        while len(got) < sum(map(len, vec)):
            chunk = b.recv(65536)
            if not chunk:
                return
            got.extend(chunk)

    t = threading.Thread(target=read)
    t.start()
    try:
        sendmsg_all(a, vec)
        t.join(30)
    finally:
        a.close()
        b.close()
    frames = FrameDecoder().feed(bytes(got))
    assert [bytes(f.payload) for f in frames] == [b"head" + payload]
