"""The framed protocol's connection rules (sans-IO): pipelining, replies in any order matched by id,
abandoned calls, HELLO, backpressure, and what each side treats as the peer's protocol violation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orbitmq.common import framing
from orbitmq.common.framing import FLAG_RESPONSE, ErrorInfo, FrameError
from orbitmq.common.framing_conn import (
    ClientSide,
    Failed,
    Hello,
    HelloReply,
    LocalProtocolError,
    Reply,
    Request,
    ServerSide,
)
from orbitmq.common.framing_methods import BY_CODE, BY_NAME, HELLO, PROTOCOL
from orbitmq.protos import broker_pb2


def _pair(**server_kw) -> tuple[ClientSide, ServerSide]:
    c, s = ClientSide(), ServerSide(**server_kw)
    (hello,) = s.receive(c.hello(client="test"))
    assert isinstance(hello, Hello) and hello.fields["client"] == "test"
    (rep,) = c.receive(s.hello_reply(hello.request_id))
    assert isinstance(rep, HelloReply) and rep.fields["protocol"] == PROTOCOL
    assert c.hello_fields["max_in_flight"] == s.max_in_flight
    return c, s


@given(st.lists(st.binary(max_size=50), min_size=1, max_size=20), st.randoms(use_true_random=False),
       st.booleans())
def test_pipelined_calls_answered_in_any_order(payloads, rnd, crc):
    c, s = _pair()
    c.crc = crc
    sent = {}
    wire = b""
    for i, p in enumerate(payloads):
        rid, data = c.request(1 + i % 3, p)
        sent[rid] = (1 + i % 3, p)
        wire += data
    reqs = s.receive(wire)
    assert [(r.method, r.payload) for r in reqs] == list(sent.values())
    assert s.in_flight == len(payloads)
    rnd.shuffle(reqs)
    back = b""
    for r in reqs:     # echo the payload reversed; every third one fails
        if r.request_id % 3 == 0:
            back += s.fail(r.request_id, ErrorInfo("NOT_MASTER", "moved", "m:1", True))
        else:
            back += s.reply(r.request_id, r.payload[::-1])
    assert s.in_flight == 0
    events = c.receive(back)
    assert c.pending == 0
    assert [e.request_id for e in events] == [r.request_id for r in reqs]
    for e in events:
        method, p = sent[e.request_id]
        assert e.method == method
        if isinstance(e, Failed):
            assert e.error == ErrorInfo("NOT_MASTER", "moved", "m:1", True)
        else:
            assert isinstance(e, Reply) and e.payload == p[::-1]


def test_a_reply_to_an_abandoned_call_is_dropped_and_an_unknown_one_closes():
    c, s = _pair()
    rid, data = c.request(1, b"a")
    (req,) = s.receive(data)
    assert c.abandon(rid)
    assert c.receive(s.reply(rid, b"late")) == []
    with pytest.raises(FrameError, match="not outstanding"):
        c.receive(framing.encode(4242, 1, b"", FLAG_RESPONSE))
    assert c.closed
    with pytest.raises(LocalProtocolError):
        c.request(1, b"after close")


def test_a_reply_naming_another_method_closes():
    c, s = _pair()
    rid, _ = c.request(1, b"a")
    with pytest.raises(FrameError, match="names method 2"):
        c.receive(framing.encode(rid, 2, b"", FLAG_RESPONSE))


def test_close_returns_the_calls_still_outstanding():
    c, _ = _pair()
    ids = {c.request(1, b"")[0] for _ in range(3)}
    assert set(c.close("gone")) == ids
    assert c.pending == 0


def test_client_misuse_is_a_local_error():
    c = ClientSide()
    with pytest.raises(LocalProtocolError, match="HELLO before"):
        c.request(1, b"")
    c.hello()
    with pytest.raises(LocalProtocolError):
        c.hello()
    with pytest.raises(LocalProtocolError):
        c.request(HELLO, b"")


def test_server_rejects_replies_duplicates_and_requests_before_hello():
    c, s = _pair()
    with pytest.raises(FrameError, match="reply frame"):
        s.receive(framing.encode(5, 1, b"", FLAG_RESPONSE))
    c, s = _pair()
    s.receive(framing.encode(5, 1, b""))
    with pytest.raises(FrameError, match="reused"):
        s.receive(framing.encode(5, 1, b""))
    strict = ServerSide(require_hello=True)
    with pytest.raises(FrameError, match="before HELLO"):
        strict.receive(framing.encode(5, 1, b""))
    c, s = _pair()
    with pytest.raises(FrameError, match="second HELLO"):
        s.receive(framing.encode(77, HELLO, b'{"protocol":"orbitmq-framed/1"}'))
    with pytest.raises(FrameError, match="not JSON|protocol"):
        ServerSide().receive(framing.encode(1, HELLO, b"hello?"))


def test_oneway_requests_are_not_tracked_and_get_no_reply():
    c, s = _pair()
    _, data = c.request(1, b"fire", oneway=True)
    (req,) = s.receive(data)
    assert isinstance(req, Request) and req.oneway and s.in_flight == 0
    assert c.pending == 0
    with pytest.raises(LocalProtocolError):
        s.reply(req.request_id, b"")


def test_backpressure_flag_at_max_in_flight():
    c, s = _pair(max_in_flight=2)
    reqs = s.receive(b"".join(c.request(1, b"")[1] for _ in range(3)))
    assert s.want_pause            # the shell stops reading until replies drain
    c.receive(s.reply(reqs[0].request_id, b""))
    c.receive(s.reply(reqs[1].request_id, b""))
    assert not s.want_pause


def test_replies_carry_a_crc_when_the_request_did():
    c, s = _pair()
    c.crc = True
    rid, data = c.request(1, b"x")
    (req,) = s.receive(data)
    out = s.reply(rid, b"y")
    assert out[7] & framing.FLAG_CRC
    assert c.receive(out) == [Reply(rid, 1, b"y")]


def test_request_ids_skip_zero_and_outstanding_ones_when_they_wrap():
    c, _ = _pair()
    c._next = framing.MAX_REQUEST_ID
    a, _ = c.request(1, b"")
    b, _ = c.request(1, b"")
    assert a == framing.MAX_REQUEST_ID and b not in (0, a)


def test_method_table_matches_the_broker_service():
    service = broker_pb2.DESCRIPTOR.services_by_name["Broker"]
    methods = {m.name: m for m in service.methods}
    assert len(BY_CODE) == len(BY_NAME)
    for code, m in BY_CODE.items():
        assert code != HELLO and 0 < code <= framing.MAX_METHOD
        d = methods[m.name]
        assert m.request.DESCRIPTOR.full_name == d.input_type.full_name
        assert m.response.DESCRIPTOR.full_name == d.output_type.full_name
    for needed in ("SendMessage", "PullMessage", "GetOffsetRange", "CommitOffset", "QueryOffset",
                   "ConsumerHeartbeat", "GetConsumerList", "UnregisterConsumer"):
        assert needed in BY_NAME


@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(min_value=1, max_value=400), max_size=12))
def test_client_missing_is_wanted_after_every_receive(payload, cuts):
    """`missing` (what the client shell sizes its reads and SO_RCVLOWAT by) is the decoder's
    `wanted` after each receive(), and 0 once the reply is whole."""
    c, s = _pair()
    rid, data = c.request(BY_NAME["SendMessage"].code, b"req")
    s.receive(data)
    reply = s.reply(rid, payload)
    pos, got = 0, []
    for n in cuts + [len(reply)]:
        chunk = reply[pos:pos + n]
        pos += len(chunk)
        if chunk:
            got += c.receive(chunk)
            assert c.missing == c.wanted
        if pos >= len(reply):
            break
    assert c.missing == 0 and [r.payload for r in got] == [payload]
