"""RemotingClient with several threads waiting on one connection: the thread that reads the socket
completes the others' calls; a thread waiting while another reads can time out (and wait again);
every call gets its own reply. Against a small framed server in the test (a real TCP socket on
loopback, common/framing_conn.ServerSide) that answers only when the test says so."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from orbitmq.client.remoting import RemotingClient
from orbitmq.common.framing_conn import Request
from orbitmq.protos import broker_pb2
from tests.remoting.framed_server import OneConnServer


class HeldServer(OneConnServer):
    """Accepts one connection, answers HELLO at once and every request only on `release()`
    (a SendResponse whose broker_set names the request's topic)."""

    def __init__(self) -> None:
        self.held: list[Request] = []
        self.cond = threading.Condition()
        super().__init__()

    def on_request(self, req: Request) -> None:
        with self.cond:
            self.held.append(req)
            self.cond.notify_all()

    def wait_held(self, n: int, timeout: float = 30) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.held) >= n, timeout), f"{len(self.held)} requests held"

    def release(self) -> None:
        with self.cond:
            reqs, self.held = self.held, []
        out = b""
        for r in reqs:
            topic = broker_pb2.SendRequest.FromString(r.payload).topic
            out += self.side.reply(r.request_id, broker_pb2.SendResponse(broker_set=topic).SerializeToString())
        self.conn.sendall(out)

@pytest.fixture
def server():
    s = HeldServer()
    yield s
    s.close()


def test_a_waiter_times_out_while_another_thread_reads_then_gets_its_reply(server) -> None:
    cli = RemotingClient(server.addr)
    try:
        first = cli.future("SendMessage", broker_pb2.SendRequest(topic="A"), 60)
        got: dict[str, str] = {}
        reader = threading.Thread(target=lambda: got.update(a=first.result().broker_set))
        reader.start()
        second = cli.future("SendMessage", broker_pb2.SendRequest(topic="B"), 60)
        server.wait_held(2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and cli._rlock.acquire(blocking=False):
            cli._rlock.release()     # nobody reads yet: give the other thread time to start reading
            time.sleep(0.01)
        # whether this thread waits on the reader or reads itself, nothing is answered: it times out
        t0 = time.monotonic()
        with pytest.raises(grpc.FutureTimeoutError):
            second.result(timeout=0.2)
        assert time.monotonic() - t0 < 20 and not second.done()
        server.release()
        assert second.result(timeout=max(1.0, deadline - time.monotonic())).broker_set == "B"
        reader.join(30)
        assert got == {"a": "A"}
        assert cli._calls == {}
    finally:
        cli.close()


def test_many_threads_each_get_their_own_reply(server) -> None:
    cli = RemotingClient(server.addr)
    try:
        n = 6
        results: dict[int, str] = {}
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                results[i] = cli.call("SendMessage", broker_pb2.SendRequest(topic=f"t{i}"), 60).broker_set
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        server.wait_held(n)
        server.release()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert results == {i: f"t{i}" for i in range(n)}
        # a call that ends by its deadline wakes a thread waiting on it (no reply ever comes)
        late = cli.future("SendMessage", broker_pb2.SendRequest(topic="late"), 0.3)
        waiter_errors: list[BaseException] = []
        w = threading.Thread(target=lambda: waiter_errors.append(late.exception(timeout=30)))
        w.start()
        w.join(30)
        assert not w.is_alive()
        assert waiter_errors and isinstance(waiter_errors[0], grpc.RpcError)
        assert waiter_errors[0].code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        cli.close()


def test_work_handed_to_a_reader_thread_runs_there_while_another_thread_reads(server, monkeypatch) -> None:
    """run_after_read (the push consumer's listener path): the reader thread that completed A runs
    A's slow work itself, and the connection's next reply (B) is still read and completed meanwhile
    by a second reader thread. With every other reader busy (MAX_READERS 2 here) a third hand-off is
    refused, so nobody is ever left without a reader; outside a reader thread it is refused too."""
    from orbitmq.client import remoting

    monkeypatch.setattr(remoting, "MAX_READERS", 2)
    assert remoting.run_after_read(lambda: None) is False          # not on a reader thread
    cli = RemotingClient(server.addr)
    release_a = threading.Event()
    ran: dict[str, str] = {}
    handed: dict[str, bool] = {}
    b_done = threading.Event()

    def on_a(_call) -> None:
        def slow() -> None:
            ran["a"] = threading.current_thread().name + f"/{threading.get_ident()}"
            release_a.wait(30)
        handed["a"] = remoting.run_after_read(slow)
        ran["a_reader"] = f"/{threading.get_ident()}"

    def on_b(_call) -> None:
        handed["b"] = remoting.run_after_read(lambda: None)     # the only other reader would go busy
        ran["b_reader"] = f"/{threading.get_ident()}"
        b_done.set()

    try:
        a = cli.future("SendMessage", broker_pb2.SendRequest(topic="A"), 60)
        a.add_done_callback(on_a)
        server.wait_held(1)
        server.release()
        assert proc_wait(lambda: "a" in ran), "A's handed-over work did not start"
        assert ran["a"].endswith(ran["a_reader"])                 # on the very thread that read A
        b = cli.future("SendMessage", broker_pb2.SendRequest(topic="B"), 60)
        b.add_done_callback(on_b)
        server.wait_held(1)
        server.release()
        assert b_done.wait(10), "B's reply was not read while A's work ran"
        assert b.result().broker_set == "B" and ran["b_reader"] != ran["a_reader"]
        assert handed == {"a": True, "b": False}
    finally:
        release_a.set()
        cli.close()


def _b_read_by(cli: RemotingClient, server: HeldServer) -> int:
    """Send B and have the server answer it: the thread whose callback saw B's reply."""
    seen: dict[str, int] = {}
    done = threading.Event()

    def on_b(_call) -> None:
        seen["t"] = threading.get_ident()
        done.set()

    b = cli.future("SendMessage", broker_pb2.SendRequest(topic="B"), 60)
    b.add_done_callback(on_b)
    server.wait_held(1)
    server.release()
    assert done.wait(10), "B's reply was not read"
    assert b.result().broker_set == "B"
    return seen["t"]


def proc_wait(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_quick_work_wakes_nobody_and_its_thread_reads_the_next_reply(server, monkeypatch) -> None:
    """run_after_read(quick=True): the work runs on the thread that read A with no second reader
    woken (the connection keeps one reader thread), and that same thread reads B's reply after it."""
    from orbitmq.client import remoting

    monkeypatch.setattr(remoting, "LAZY_HANDOFF_S", 30.0)   # (a loaded machine must not look like slow work)
    cli = RemotingClient(server.addr)
    seen: dict[str, int] = {}
    ran = threading.Event()

    def on_a(_call) -> None:
        seen["a_reader"] = threading.get_ident()
        assert remoting.run_after_read(lambda: (seen.update(a_work=threading.get_ident()), ran.set()), quick=True)

    try:
        a = cli.future("SendMessage", broker_pb2.SendRequest(topic="A"), 60)
        a.add_done_callback(on_a)
        keep = cli.future("SendMessage", broker_pb2.SendRequest(topic="K"), 60)   # a call stays outstanding
        server.wait_held(2)
        with server.cond:        # answer A only
            server.held = [r for r in server.held if broker_pb2.SendRequest.FromString(r.payload).topic == "A"]
        server.release()
        assert ran.wait(10)
        assert seen["a_reader"] == seen["a_work"] == _b_read_by(cli, server)
        assert cli._conn.readers == 1          # no second reader thread was ever needed
        assert not keep.done()
    finally:
        cli.close()


def test_quick_work_that_runs_long_hands_reading_on(server) -> None:
    """Work marked quick that then takes long leaves the reading role free only for about
    LAZY_HANDOFF_S: the watchdog starts a second reader, which reads B's reply while the work runs."""
    from orbitmq.client import remoting

    cli = RemotingClient(server.addr)
    release_a = threading.Event()
    seen: dict[str, int] = {}

    def slow() -> None:
        seen["a_work"] = threading.get_ident()
        release_a.wait(30)

    def on_a(_call) -> None:
        assert remoting.run_after_read(slow, quick=True)

    try:
        a = cli.future("SendMessage", broker_pb2.SendRequest(topic="A"), 60)
        a.add_done_callback(on_a)
        server.wait_held(1)
        server.release()
        assert proc_wait(lambda: "a_work" in seen)
        t0 = time.monotonic()
        b_reader = _b_read_by(cli, server)     # while A's work still runs
        assert time.monotonic() - t0 < 2.0
        assert b_reader != seen["a_work"] and not release_a.is_set()
    finally:
        release_a.set()
        cli.close()


def test_a_caller_reading_its_own_reply_waits_in_recv_and_still_times_out(server) -> None:
    """On plain TCP the kernel ends a recv after READ_WAIT_S (SO_RCVTIMEO), so a sync caller reading
    its own reply does no poll() first; an unanswered call still times out, and its reply is read
    later by the next wait."""
    import socket
    import struct

    from orbitmq.client import remoting

    cli = RemotingClient(server.addr)
    try:
        call = cli.future("SendMessage", broker_pb2.SendRequest(topic="A"), 60)
        conn = cli._conn
        assert conn.timed_recv and not conn.tls
        sec, usec = struct.unpack("ll", conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
        assert sec * 1_000_000 + usec == int(remoting.READ_WAIT_S * 1_000_000)

        class Counting:
            def __init__(self, inner) -> None:
                self.inner, self.polls = inner, 0

            def poll(self, *a):
                self.polls += 1
                return self.inner.poll(*a)

        conn.poller = counting = Counting(conn.poller)
        server.wait_held(1)
        t0 = time.monotonic()
        with pytest.raises(grpc.FutureTimeoutError):
            call.result(timeout=0.35)
        took = time.monotonic() - t0
        assert 0.3 <= took < 10, took
        # the waits of READ_WAIT_S were recvs the kernel ended; only the last, shorter one polls
        # (polling before every wait would make at least four here)
        assert counting.polls <= 2, counting.polls
        server.release()
        assert call.result(timeout=30).broker_set == "A"
    finally:
        cli.close()
