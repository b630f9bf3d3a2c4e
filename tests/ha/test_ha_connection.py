"""The replication connections' state machines (pure): handshake, truncation order, epochs, acks,
confirm offsets, refusals, and a follower converging on its master's log over any chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from orbitmq.broker.ha import connection as hc
from orbitmq.broker.ha import protocol as hp
from orbitmq.broker.ha.epochs import EpochEntry as E


def _log(mx: int, epochs: list[E], confirm: int = 0, mn: int = 0) -> hc.MasterLog:
    return hc.MasterLog(mx, mn, confirm, tuple(epochs))


def _handshake(f: hc.FollowerConnection, m: hc.MasterConnection, f_max: int, f_epochs: list[E],
               log: hc.MasterLog) -> list:
    hello = f.start(f_max, f_epochs)
    assert [type(a) for a in hello] == [hc.Send]
    acts = m.receive_data(hp.encode(hello[0].frame), log)
    assert acts[0] == hc.Hello(f.broker_id, f.learner) and isinstance(acts[1].frame, hp.Welcome)
    assert m.state is hc.ConnState.AWAIT_FIRST_ACK
    f_acts = f.receive_data(hp.encode(acts[1].frame), 0.0)
    ack = f_acts[-1]
    assert isinstance(ack, hc.Send) and isinstance(ack.frame, hp.Ack)
    m_acts = m.receive_data(hp.encode(ack.frame), log)
    assert m_acts == [hc.Acked(ack.frame.offset, True)] and m.state is hc.ConnState.STREAMING
    return f_acts


def test_divergent_tail_is_truncated_store_first_then_epochs():
    f = hc.FollowerConnection(2, False)
    m = hc.MasterConnection(1, 3)
    acts = _handshake(f, m, 150, [E(1, 0), E(2, 100)], _log(200, [E(1, 0), E(3, 120)]))
    assert acts[:2] == [hc.Truncate(100), hc.TruncateEpochs(100)]
    assert f.own_max == 100 and f.truncated == (150, 100) and m.pos == 100
    assert f.epochs == [E(1, 0)]


def test_empty_follower_starts_its_log_at_the_masters_first_retained_offset():
    # the master expired [0, 4096): an empty replica (new, or wiped) starts its log there
    f = hc.FollowerConnection(2, False)
    m = hc.MasterConnection(1, 3, frame_bytes=100)
    log = _log(5000, [E(1, 0), E(3, 4500)], confirm=4800, mn=4096)
    acts = _handshake(f, m, 0, [], log)
    assert acts == [hc.StartLogAt(4096), hc.TruncateEpochs(0), hc.Send(hp.Ack(4096))]
    assert f.own_max == 4096 and f.truncated is None and m.pos == 4096 and f.epochs == []
    chunk = m.next_chunk(log)
    assert chunk == hc.Chunk(4096, 100, 1, 0, 4500)   # the epoch that holds the first retained byte
    acts = f.receive_data(hp.encode(m.data_frame(chunk, b"x" * 100, log, 1.0)), 1.0)
    assert acts[:2] == [hc.AppendEpoch(1, 0), hc.AppendRaw(4096, b"x" * 100)]
    assert f.epochs == [E(1, 0)] and f.own_max == 4196


def test_a_replica_whose_log_ends_before_the_masters_start_starts_over_there():
    # away longer than the master kept its segments: what it holds is all expired on the master
    f = hc.FollowerConnection(2, True)
    m = hc.MasterConnection(1, 3)
    acts = _handshake(f, m, 3000, [E(1, 0)], _log(9000, [E(1, 0), E(2, 6000)], mn=8192))
    assert acts == [hc.StartLogAt(8192), hc.TruncateEpochs(0), hc.Send(hp.Ack(8192))]
    assert f.truncated == (3000, 8192) and f.own_max == 8192 and f.epochs == []
    # a divergent tail whose common part ends before the master's start: the same
    f = hc.FollowerConnection(3, False)
    acts = _handshake(f, hc.MasterConnection(1, 3), 7000, [E(1, 0), E(2, 5000)],
                      _log(9000, [E(1, 0), E(3, 4000)], mn=8192))
    assert acts[0] == hc.StartLogAt(8192) and f.own_max == 8192
    # whatever it keeps reaches the master's start: an ordinary truncation, nothing dropped
    f = hc.FollowerConnection(4, False)
    acts = _handshake(f, hc.MasterConnection(1, 3), 9500, [E(1, 0), E(2, 8500)],
                      _log(9000, [E(1, 0), E(3, 8300)], mn=8192))
    assert acts[:2] == [hc.Truncate(8300), hc.TruncateEpochs(8300)]
    # an empty log that already starts at the master's start (a previous start): nothing to do
    f = hc.FollowerConnection(5, False)
    acts = _handshake(f, hc.MasterConnection(1, 3), 8192, [], _log(9000, [E(1, 0)], mn=8192))
    assert acts == [hc.StartLogAt(8192), hc.TruncateEpochs(0), hc.Send(hp.Ack(8192))]


def test_data_adds_the_epoch_entry_before_the_bytes_and_acks():
    f = hc.FollowerConnection(2, False, sync_flush=True)
    m = hc.MasterConnection(1, 3, frame_bytes=30)
    log = _log(50, [E(1, 0), E(3, 40)], confirm=45)
    _handshake(f, m, 0, [], log)
    chunk = m.next_chunk(log)
    assert chunk == hc.Chunk(0, 30, 1, 0, 40)
    frame = m.data_frame(chunk, b"a" * 30, log, 1.0)
    acts = f.receive_data(hp.encode(frame), 1.0)
    assert acts == [hc.AppendEpoch(1, 0), hc.AppendRaw(0, b"a" * 30), hc.SetConfirm(30), hc.WaitFlushed(30),
                    hc.Send(hp.Ack(30))]
    chunk = m.next_chunk(log)
    assert chunk.size == 10 and chunk.limit == 40          # never across the epoch boundary at 40
    acts = f.receive_data(hp.encode(m.data_frame(chunk, b"b" * 10, log, 1.1)), 1.1)
    assert acts[0] == hc.AppendRaw(30, b"b" * 10)
    acts = f.receive_data(hp.encode(m.data_frame(m.next_chunk(log), b"c" * 10, log, 1.2)), 1.2)
    assert acts[:2] == [hc.AppendEpoch(3, 40), hc.AppendRaw(40, b"c" * 10)]
    assert hc.SetConfirm(45) in acts and m.next_chunk(log) is None
    assert m.heartbeat(log, 1.5) is None and m.heartbeat(log, 2.3).body == b""


def test_heartbeat_acks_only_when_due_and_confirm_never_passes_own_end():
    f = hc.FollowerConnection(2, False, heartbeat_s=1.0)
    m = hc.MasterConnection(1, 1)
    log = _log(10, [E(1, 0)], confirm=10)
    _handshake(f, m, 10, [E(1, 0)], log)
    hb = hp.encode(hp.Data(10, 1, 10, 10, 10, b""))
    assert f.receive_data(hb, 0.5) == [hc.SetConfirm(10)]
    assert f.receive_data(hb, 0.9) == []
    assert f.receive_data(hb, 1.0) == [hc.Send(hp.Ack(10))]
    f2 = hc.FollowerConnection(3, False)
    _handshake(f2, hc.MasterConnection(1, 1), 0, [], _log(10, [E(1, 0)], confirm=10))
    assert f2.receive_data(hp.encode(hp.Data(0, 1, 0, 10, 10, b"")), 5.0) == [hc.Send(hp.Ack(0))]


def test_refusals_and_misuse_close_the_machines():
    f = hc.FollowerConnection(2, False, min_master_epoch=5)
    f.start(0, [])
    with pytest.raises(hc.ReplicationRefused, match="older than 5"):
        f.receive_data(hp.encode(hp.Welcome(1, 4, 0, 0, 0, ())), 0.0)
    assert f.state is hc.ConnState.CLOSED
    f = hc.FollowerConnection(2, False)
    f.start(0, [])
    with pytest.raises(hp.FrameError, match="expected WELCOME"):
        f.receive_data(hp.encode(hp.Ack(0)), 0.0)
    f = hc.FollowerConnection(2, False)
    f.start(0, [])
    f.receive_data(hp.encode(hp.Welcome(1, 1, 10, 0, 0, (E(1, 0),))), 0.0)
    with pytest.raises(hc.ReplicationRefused, match="starts at 5"):
        f.receive_data(hp.encode(hp.Data(5, 1, 0, 0, 10, b"x")), 0.0)
    m = hc.MasterConnection(1, 1)
    assert m.receive_data(hp.encode(hp.Hello(1, False, 0, ())), _log(0, [])) == \
        [hc.Send(hp.Refuse("BAD_REQUEST", "broker id 1 is the master's"))]
    m = hc.MasterConnection(1, 1)
    assert m.receive_data(hp.encode(hp.Hello(2, False, 0, ())), _log(0, []), serving=False)[0].frame.code == \
        "NOT_MASTER"
    m = hc.MasterConnection(1, 1)
    m.receive_data(hp.encode(hp.Hello(2, False, 0, ())), _log(5, [E(1, 0)]))
    with pytest.raises(hp.FrameError, match="beyond the master's end"):
        m.receive_data(hp.encode(hp.Ack(6)), _log(5, [E(1, 0)]))
    assert m.state is hc.ConnState.CLOSED


@given(f_epochs=hs.lists(hs.tuples(hs.integers(1, 3), hs.integers(0, 40)), max_size=3),
       f_extra=hs.integers(0, 60), frame_bytes=hs.integers(1, 50), cut=hs.integers(1, 200))
@settings(max_examples=200, deadline=None)
def test_a_follower_ends_with_the_masters_log(f_epochs, f_extra, frame_bytes, cut):
    """Master log: epochs 1@0, 2@30, 4@70, end 100, bytes = the epoch number repeated. A follower
    with any prefix-consistent history ends with exactly the master's bytes and epoch list."""
    m_epochs = [E(1, 0), E(2, 30), E(4, 70)]
    master = bytes(1 if i < 30 else 2 if i < 70 else 4 for i in range(100))
    # the follower: a prefix of the master's history, then epochs of its own (3 never was the master's)
    keep = min(f_extra, 100)
    f_entries = [e for e in m_epochs if e.start_offset < keep]
    own = bytearray(master[:keep])
    e, o = (f_entries[-1].epoch if f_entries else 0), keep
    for de, do in f_epochs:
        e += de
        if e in (1, 2, 4):
            e = 5 + e
        f_entries.append(E(e, o))
        own += bytes([e]) * do
        o += do
    log = _log(100, m_epochs, confirm=100)
    f = hc.FollowerConnection(2, False)
    m = hc.MasterConnection(1, 4, frame_bytes=frame_bytes)
    entries = list(f_entries)
    out = []
    stream = hp.encode(f.start(len(own), entries)[0].frame)
    for a in m.receive_data(stream, log):
        if isinstance(a, hc.Send):
            out += f.receive_data(hp.encode(a.frame), 0.0)
    m.receive_data(hp.encode(out[-1].frame), log)
    while (chunk := m.next_chunk(log)) is not None:
        data = hp.encode(m.data_frame(chunk, master[chunk.start:chunk.start + chunk.size], log, 0.0))
        for i in range(0, len(data), cut):
            out += f.receive_data(data[i:i + cut], 0.0)
    for a in out:   # carry out on an in-memory log
        if isinstance(a, hc.Truncate):
            del own[a.offset:]
        elif isinstance(a, hc.TruncateEpochs):
            entries = [x for x in entries if x.start_offset < a.offset]
        elif isinstance(a, hc.AppendEpoch):
            entries.append(E(a.epoch, a.start))
        elif isinstance(a, hc.AppendRaw):
            assert a.start == len(own)
            own += a.body
    assert bytes(own) == master
    assert entries == [x for x in m_epochs if x.start_offset < 100]
