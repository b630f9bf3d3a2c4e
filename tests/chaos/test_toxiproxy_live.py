"""The Toxiproxy server as a real process, driven through toxiproxy-python (and raw HTTP where the
client has no call), with real TCP traffic through its proxies to loopback servers in this test.

By default the embedded server is started on a free port (`orbitmq toxiproxy`, via
chaos.toxiproxy_launcher); with TOXIPROXY_URL set the same tests run against that server (a real
toxiproxy-server), and only the tests of our extra validation are skipped there. Timing checks are
lower bounds (a delay lasts at least so long); the few upper bounds are several times the expected.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import pytest
import requests
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from orbitmq.chaos.toxiproxy_launcher import ENV_URL, ToxiproxyHandle, start_or_connect
from orbitmq.common import net

pytestmark = pytest.mark.process

WAIT = 15.0   # generous deadline for anything that should happen "soon"


# -- loopback servers behind the proxies ---------------------------------------------------------

class TcpServer:
    """A threaded loopback server. mode: "echo", "echo_close" (echo once, then close), "source" (send
    `size` bytes then close), "tag" (echo with a prefix)."""

    def __init__(self, mode: str = "echo", size: int = 0, tag: bytes = b"") -> None:
        self.mode, self.size, self.tag = mode, size, tag
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.mode == "source":
                c.sendall(b"s" * self.size)
                return
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(self.tag + d)
                if self.mode == "echo_close":
                    return
        except OSError:
            pass
        finally:
            c.close()

    def close(self) -> None:
        self.stopped = True
        self.sock.close()


@pytest.fixture
def echo():
    s = TcpServer("echo")
    yield s
    s.close()


@pytest.fixture(scope="module")
def toxi(tmp_path_factory) -> ToxiproxyHandle:
    h = start_or_connect(log_dir=tmp_path_factory.mktemp("toxiproxy"))
    yield h
    h.stop()


@pytest.fixture
def mk(toxi):
    """mk(upstream, **kw) -> toxiproxy.Proxy with a unique name; every one is deleted afterwards."""
    made = []

    def make(upstream: str, **kw):
        name = f"t-{uuid.uuid4().hex[:10]}"
        made.append(name)
        return toxi.client.create(upstream=upstream, name=name, listen=kw.pop("listen", "127.0.0.1:0"), **kw)

    yield make
    for name in made:
        requests.delete(f"{toxi.url}/proxies/{name}", timeout=10)


def connect(proxy) -> socket.socket:
    host, port = proxy.listen.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=WAIT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def established(s: socket.socket) -> None:
    """One echo round trip: after it the proxy has surely accepted and wired this connection."""
    s.sendall(b"?")
    assert recv_exact(s, 1) == b"?"


def recv_exact(s: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        d = s.recv(n - len(got))
        if not d:
            raise EOFError(f"EOF after {len(got)} of {n} bytes")
        got += d
    return got


def outcome(s: socket.socket, within: float = WAIT) -> tuple[bytes, str]:
    """Read until EOF ("eof"), a reset ("reset") or `within` seconds of silence ("open")."""
    s.settimeout(within)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return data, "eof"
            data += d
    except ConnectionResetError:
        return data, "reset"
    except TimeoutError:
        return data, "open"


def rtt(proxy) -> float:
    with connect(proxy) as s:
        t0 = time.monotonic()
        s.sendall(b"x" * 16)
        recv_exact(s, 16)
        return time.monotonic() - t0


def api(toxi, method: str, path: str, body=None, **kw) -> requests.Response:
    data = body if isinstance(body, bytes) else (None if body is None else json.dumps(body))
    return requests.request(method, toxi.url + path, data=data, timeout=30, **kw)


def refused(proxy) -> bool:
    host, port = proxy.listen.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def embedded_only(toxi):
    if toxi.external:
        pytest.skip("the reference server crashes on this input; only the embedded server validates it")


# -- server, handle, proxies ---------------------------------------------------------------------

def test_version_and_handle(toxi):
    assert json.loads(toxi.client.version())["version"]
    other = start_or_connect(toxi.url)           # an explicit URL: connect only, start nothing
    assert other.pid is None and other.external
    other.stop()
    assert toxi.alive()
    if not toxi.external:
        assert toxi.pid and toxi.url == f"http://127.0.0.1:{toxi.port}"
    assert (APIConsumer.host, APIConsumer.port) == (toxi.host, toxi.port)


def test_connect_to_nothing_fails_clearly():
    with pytest.raises(ConnectionError, match="no Toxiproxy API"):
        start_or_connect(f"http://127.0.0.1:{net.free_port()}")


def test_create_show_list_delete(toxi, mk, echo):
    p = mk(echo.addr)
    assert p.enabled and p.upstream == echo.addr and not p.listen.endswith(":0")
    assert p.name in toxi.client.proxies()
    got = api(toxi, "GET", f"/proxies/{p.name}").json()
    assert got == {**got, "name": p.name, "listen": p.listen, "upstream": echo.addr, "enabled": True, "toxics": []}
    assert rtt(p) >= 0
    assert p.destroy()
    assert toxi.client.get_proxy(p.name) is None
    assert refused(p)


# -- toxics on real streams ----------------------------------------------------------------------

def test_latency_downstream_then_both_directions_add(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="latency", attributes={"latency": 100})
    assert min(rtt(p) for _ in range(3)) >= 0.095
    p.add_toxic(type="latency", stream="upstream", attributes={"latency": 50})
    assert min(rtt(p) for _ in range(3)) >= 0.145


def test_latency_jitter_spreads_delays(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="latency", attributes={"latency": 100, "jitter": 50})
    samples = [rtt(p) for _ in range(15)]
    assert min(samples) >= 0.045
    assert max(samples) - min(samples) >= 0.01   # uniform over 100 ms: 15 samples never all within 10 ms


def test_latency_chunks_are_pipelined(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="latency", attributes={"latency": 500})
    with connect(p) as s:
        t0 = time.monotonic()
        for _ in range(5):
            s.sendall(b"abcd")
            time.sleep(0.05)
        recv_exact(s, 20)
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.5
    assert elapsed < 2.0   # queued one after another would be 2.5 s; pipelined is about 0.7 s


def test_removing_latency_flushes_held_data(toxi, mk, echo):
    p = mk(echo.addr)
    with connect(p) as s:
        established(s)
        p.add_toxic(name="slow", type="latency", attributes={"latency": 30000})
        s.sendall(b"held")
        time.sleep(0.3)
        t0 = time.monotonic()
        p.destroy_toxic("slow")
        s.settimeout(WAIT)
        assert recv_exact(s, 4) == b"held"
        assert time.monotonic() - t0 < WAIT  # long before the 30 s latency


def test_bandwidth_throttles_a_transfer(toxi, mk):
    src = TcpServer("source", size=200_000)
    try:
        p = mk(src.addr)
        with connect(p) as s:
            data, how = outcome(s)
        assert (len(data), how) == (200_000, "eof")            # unthrottled: all of it
        p.add_toxic(type="bandwidth", attributes={"rate": 100})  # 100 kB/s
        with connect(p) as s:
            t0 = time.monotonic()
            data, how = outcome(s, within=60)
            elapsed = time.monotonic() - t0
        assert (len(data), how) == (200_000, "eof")
        assert elapsed >= 1.6                                     # 2 s at 100 kB/s
    finally:
        src.close()


def test_bandwidth_zero_holds_data_until_removed(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(name="stall", type="bandwidth", attributes={"rate": 0})
    with connect(p) as s:
        s.sendall(b"wait")
        assert outcome(s, within=0.7) == (b"", "open")
        p.destroy_toxic("stall")
        s.settimeout(WAIT)
        assert recv_exact(s, 4) == b"wait"


def test_timeout_downstream_drops_data_then_closes(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="timeout", attributes={"timeout": 500})
    with connect(p) as s:
        t0 = time.monotonic()
        s.sendall(b"hi")
        data, how = outcome(s)
        assert (data, how) == (b"", "eof")
        assert time.monotonic() - t0 >= 0.45


def test_timeout_upstream_timer_runs_on_an_idle_connection(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 400})
    with connect(p) as s:
        t0 = time.monotonic()
        assert outcome(s) == (b"", "eof")
        assert time.monotonic() - t0 >= 0.35


def test_timeout_zero_never_closes_and_removal_closes(toxi, mk, echo):
    p = mk(echo.addr)
    with connect(p) as s:
        established(s)
        p.add_toxic(name="hole", type="timeout", attributes={"timeout": 0})
        s.sendall(b"lost")
        assert outcome(s, within=1.0) == (b"", "open")
        p.destroy_toxic("hole")
        assert outcome(s) == (b"", "eof")


def test_reset_peer_downstream_resets_on_data(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="reset_peer", attributes={"timeout": 0})
    with connect(p) as s:
        assert outcome(s, within=0.5) == (b"", "open")   # idle connections are left alone
        s.sendall(b"hi")
        assert outcome(s) == (b"", "reset")


def test_reset_peer_upstream_after_timeout(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 300})
    with connect(p) as s:
        t0 = time.monotonic()
        s.sendall(b"hi")
        assert outcome(s) == (b"", "reset")
        assert time.monotonic() - t0 >= 0.28


def test_reset_peer_on_an_older_connection_gives_fin(toxi, mk, echo):
    p = mk(echo.addr)
    with connect(p) as s:
        established(s)
        p.add_toxic(type="reset_peer", attributes={"timeout": 0})
        s.sendall(b"hi")
        assert outcome(s) == (b"", "eof")


def test_slow_close_delays_the_close_not_the_data(toxi, mk):
    srv = TcpServer("echo_close")
    try:
        p = mk(srv.addr)
        p.add_toxic(type="slow_close", attributes={"delay": 600})
        with connect(p) as s:
            t0 = time.monotonic()
            s.sendall(b"bye")
            assert recv_exact(s, 3) == b"bye"
            assert outcome(s) == (b"", "eof")
            assert time.monotonic() - t0 >= 0.55
    finally:
        srv.close()


def test_slicer_cuts_data_into_delayed_pieces(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="slicer", attributes={"average_size": 10, "size_variation": 5, "delay": 20000})
    payload = bytes(range(100))
    with connect(p) as s:
        t0 = time.monotonic()
        s.sendall(payload)
        reads, got = [], b""
        while len(got) < 100:
            d = s.recv(1000)
            assert d, "EOF before all data"
            reads.append(len(d))
            got += d
        elapsed = time.monotonic() - t0
    assert got == payload
    assert len(reads) >= 3 and elapsed >= 0.1   # at least 7 pieces, 20 ms apart


def test_limit_data_downstream_closes_after_exactly_n_bytes(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="limit_data", attributes={"bytes": 50})
    with connect(p) as s:
        s.sendall(b"a" * 30)
        assert recv_exact(s, 30) == b"a" * 30
        s.sendall(b"b" * 30)
        assert outcome(s) == (b"b" * 20, "eof")


def test_limit_data_upstream_closes_before_the_echo(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="limit_data", stream="upstream", attributes={"bytes": 10})
    with connect(p) as s:
        s.sendall(b"x" * 16)
        assert outcome(s) == (b"", "eof")


def test_limit_data_count_survives_an_update(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(name="cap", type="limit_data", attributes={"bytes": 10})
    with connect(p) as s:
        s.sendall(b"12345")
        assert recv_exact(s, 5) == b"12345"
        r = api(toxi, "PATCH", f"/proxies/{p.name}/toxics/cap", {"attributes": {"bytes": 8}})
        assert r.status_code == 200 and r.json()["attributes"] == {"bytes": 8}
        s.sendall(b"67890")
        assert outcome(s) == (b"678", "eof")


def test_chain_changes_on_a_live_connection(toxi, mk, echo):
    p = mk(echo.addr)
    with connect(p) as s:
        established(s)
        p.add_toxic(name="slow", type="latency", attributes={"latency": 200})
        p.add_toxic(name="cap", type="limit_data", attributes={"bytes": 20})
        t0 = time.monotonic()
        s.sendall(b"a" * 5)
        assert recv_exact(s, 5) == b"a" * 5
        assert time.monotonic() - t0 >= 0.19
        r = api(toxi, "PATCH", f"/proxies/{p.name}/toxics/slow", {"attributes": {"latency": 0}})
        assert r.json()["attributes"] == {"latency": 0, "jitter": 0}
        p.destroy_toxic("slow")                 # the stage before `cap` goes; cap keeps its count
        s.sendall(b"b" * 5)
        assert recv_exact(s, 5) == b"b" * 5
        s.sendall(b"c" * 20)
        assert outcome(s) == (b"c" * 10, "eof")


def test_toxicity_zero_never_applies(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="limit_data", toxicity=0.0, attributes={"bytes": 0})
    for _ in range(10):
        with connect(p) as s:
            s.sendall(b"ok")
            assert recv_exact(s, 2) == b"ok"


def test_toxicity_half_applies_to_some_connections(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="limit_data", toxicity=0.5, attributes={"bytes": 0})
    results = []
    for _ in range(24):
        with connect(p) as s:
            s.sendall(b"ok")
            results.append(s.recv(2)[:1])   # affected: closed at once (limit 0); else the echo
    assert 0 < results.count(b"") < 24, results
    assert set(results) == {b"", b"o"}


# -- proxy lifecycle with live connections ------------------------------------------------------

def test_disable_closes_connections_and_enable_reuses_the_port(toxi, mk, echo):
    p = mk(echo.addr)
    p.add_toxic(type="latency", attributes={"latency": 1})
    listen = p.listen
    with connect(p) as s:
        established(s)
        p.disable()
        assert outcome(s) == (b"", "eof")
    assert refused(p)
    got = api(toxi, "GET", f"/proxies/{p.name}").json()
    assert got["enabled"] is False and [t["name"] for t in got["toxics"]] == ["latency_downstream"]
    p.enable()
    assert api(toxi, "GET", f"/proxies/{p.name}").json()["listen"] == listen
    assert rtt(p) >= 0


def test_down_context_manager(toxi, mk, echo):
    p = mk(echo.addr)
    with p.down():
        assert refused(p)
    assert rtt(p) >= 0


def test_update_upstream_closes_connections_and_redirects(toxi, mk):
    a, b = TcpServer("tag", tag=b"A"), TcpServer("tag", tag=b"B")
    try:
        p = mk(a.addr)
        with connect(p) as s:
            s.sendall(b"1")
            assert recv_exact(s, 2) == b"A1"
            r = api(toxi, "PATCH", f"/proxies/{p.name}", {"upstream": b.addr})
            assert r.status_code == 200 and r.json()["upstream"] == b.addr
            assert outcome(s) == (b"", "eof")
        with connect(p) as s:
            s.sendall(b"2")
            assert recv_exact(s, 2) == b"B2"
    finally:
        a.close()
        b.close()


def test_create_without_listen_gets_a_loopback_port(toxi, echo):
    name = f"nolisten-{uuid.uuid4().hex[:8]}"
    try:
        r = api(toxi, "POST", "/proxies", {"name": name, "upstream": echo.addr})
        assert r.status_code == 201, r.text
        proxy = toxi.client.get_proxy(name)
        if not toxi.external:   # the reference binds every interface ("[::]:port")
            assert proxy.listen.startswith("127.0.0.1:")
        proxy.listen = "127.0.0.1:" + proxy.listen.rsplit(":", 1)[1]
        assert rtt(proxy) >= 0
    finally:
        api(toxi, "DELETE", f"/proxies/{name}")


def test_update_listen_moves_the_proxy(toxi, mk, echo):
    p = mk(echo.addr)
    new_port = net.free_port()
    r = api(toxi, "PATCH", f"/proxies/{p.name}", {"listen": f"127.0.0.1:{new_port}"})
    assert r.status_code == 200 and r.json()["listen"] == f"127.0.0.1:{new_port}"
    assert refused(p)
    p.listen = r.json()["listen"]
    assert rtt(p) >= 0


def test_delete_closes_connections(toxi, mk, echo):
    p = mk(echo.addr)
    with connect(p) as s:
        established(s)
        assert p.destroy()
        assert outcome(s) == (b"", "eof")
    assert refused(p)


def test_reset_enables_everything_and_removes_toxics(toxi, mk, echo):
    p, q = mk(echo.addr), mk(echo.addr)
    p.add_toxic(type="timeout", attributes={"timeout": 0})
    q.disable()
    assert toxi.client.reset()
    for x in (p, q):
        got = api(toxi, "GET", f"/proxies/{x.name}").json()
        assert got["enabled"] and got["toxics"] == []
        assert rtt(x) >= 0


def test_upstream_unreachable_closes_the_client(toxi, mk):
    p = mk(f"127.0.0.1:{net.free_port()}")
    with connect(p) as s:
        data, how = outcome(s)
        assert data == b"" and how in ("eof", "reset")


def test_populate_endpoint(toxi, echo):
    n1, n2 = f"pop-{uuid.uuid4().hex[:8]}", f"pop-{uuid.uuid4().hex[:8]}"
    l1, l2 = (f"127.0.0.1:{port}" for port in net.free_ports(2))
    try:
        body = [{"name": n1, "listen": l1, "upstream": echo.addr},
                {"name": n2, "listen": l2, "upstream": echo.addr, "enabled": False}]
        r = api(toxi, "POST", "/populate", body)
        assert r.status_code == 201, r.text
        assert [(p["name"], p["listen"], p["enabled"]) for p in r.json()["proxies"]] == [
            (n1, l1, True), (n2, l2, False)]
        assert api(toxi, "POST", f"/proxies/{n1}/toxics", {"type": "latency"}).status_code == 200
        body[0]["listen"] = "localhost:" + l1.rsplit(":", 1)[1]      # same once resolved: kept as is
        r = api(toxi, "POST", "/populate", body)
        assert r.status_code == 201 and len(r.json()["proxies"][0]["toxics"]) == 1
        body[0]["upstream"] = f"127.0.0.1:{net.free_port()}"           # changed: replaced, toxics gone
        r = api(toxi, "POST", "/populate", body)
        assert r.status_code == 201 and r.json()["proxies"][0]["toxics"] == []
        r = api(toxi, "POST", "/populate", [{"name": "x"}])
        assert r.status_code == 400
        assert r.json() == {"error": "missing required field: upstream at proxy 1", "status": 400, "proxies": None}
        assert api(toxi, "POST", "/populate", {"name": "x"}).status_code == 400
    finally:
        for n in (n1, n2):
            api(toxi, "DELETE", f"/proxies/{n}")


def test_handle_populate_and_update_toxic(toxi, echo):
    name = f"hpop-{uuid.uuid4().hex[:8]}"
    listen = f"127.0.0.1:{net.free_port()}"
    try:
        (made,) = toxi.populate([{"name": name, "upstream": echo.addr, "listen": listen}])
        assert (made["name"], made["listen"], made["enabled"]) == (name, listen, True)
        toxi.client.get_proxy(name).add_toxic(name="cut", type="latency", attributes={"latency": 50})
        out = toxi.update_toxic(name, "cut", attributes={"latency": 30000}, toxicity=0.5)
        assert out["attributes"] == {"latency": 30000, "jitter": 0} and out["toxicity"] == 0.5
        with pytest.raises(RuntimeError, match="404"):
            toxi.update_toxic(name, "nope", attributes={})
        with pytest.raises(RuntimeError, match="missing required field"):
            toxi.populate([{"name": name}])
        assert toxi.request("GET", f"/proxies/{name}")[1]["toxics"][0]["attributes"]["latency"] == 30000
    finally:
        api(toxi, "DELETE", f"/proxies/{name}")


def test_client_side_populate(toxi, echo):
    name = f"cpop-{uuid.uuid4().hex[:8]}"
    listen = f"127.0.0.1:{net.free_port()}"
    try:
        made = toxi.client.populate([{"name": name, "upstream": echo.addr, "listen": listen}])
        assert [p.name for p in made] == [name]
        assert toxi.client.populate([{"name": name, "upstream": echo.addr, "listen": listen}]) == []
    finally:
        api(toxi, "DELETE", f"/proxies/{name}")


# -- error answers --------------------------------------------------------------------------------

def assert_error(r: requests.Response, status: int, message: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and isinstance(body["error"], str)
    if message is not None:
        assert body["error"] == message


def test_error_answers_through_the_client(toxi, mk, echo):
    p = mk(echo.addr)
    with pytest.raises(ProxyExists):
        toxi.client.create(upstream=echo.addr, name=p.name)
    with pytest.raises(NotFound):
        APIConsumer.get("/proxies/no-such-proxy")
    with pytest.raises(InvalidToxic):
        p.add_toxic(type="no_such_type")
    with pytest.raises(InvalidToxic):
        p.add_toxic(type="latency", stream="sideways")
    with pytest.raises(InvalidToxic):
        p.add_toxic(type="latency", attributes={"latency": "slow"})
    p.add_toxic(type="latency")
    with pytest.raises(ProxyExists):
        p.add_toxic(type="latency")
    with pytest.raises(NotFound):
        p.destroy_toxic("no_such_toxic")


def test_error_answers_over_http(toxi, mk, echo):
    p = mk(echo.addr)
    assert_error(api(toxi, "POST", "/proxies", b"{"), 400)
    assert_error(api(toxi, "POST", "/proxies", {"upstream": echo.addr}), 400, "missing required field: name")
    assert_error(api(toxi, "POST", "/proxies", {"name": "x"}), 400, "missing required field: upstream")
    assert_error(api(toxi, "POST", "/proxies", {"name": 1, "upstream": "x"}), 400)
    assert_error(api(toxi, "POST", "/proxies", {"name": p.name, "upstream": echo.addr}), 409, "proxy already exists")
    assert_error(api(toxi, "GET", "/proxies/no-such-proxy"), 404, "proxy not found")
    assert_error(api(toxi, "PATCH", "/proxies/no-such-proxy", {}), 404, "proxy not found")
    assert_error(api(toxi, "DELETE", "/proxies/no-such-proxy"), 404, "proxy not found")
    assert_error(api(toxi, "GET", "/proxies/no-such-proxy/toxics"), 404, "proxy not found")
    assert_error(api(toxi, "GET", f"/proxies/{p.name}/toxics/nope"), 404, "toxic not found")
    assert_error(api(toxi, "PATCH", f"/proxies/{p.name}/toxics/nope", {}), 404, "toxic not found")
    assert_error(api(toxi, "POST", f"/proxies/{p.name}/toxics", {"type": "x"}), 400, "invalid toxic type")
    assert_error(api(toxi, "POST", f"/proxies/{p.name}/toxics", {"type": "latency", "stream": "x"}), 400,
                 "stream was invalid, can be either upstream or downstream")
    assert api(toxi, "POST", f"/proxies/{p.name}/toxics", {"name": "dup", "type": "latency"}).status_code == 200
    assert_error(api(toxi, "POST", f"/proxies/{p.name}/toxics", {"name": "dup", "type": "timeout",
                                                                 "stream": "upstream"}), 409, "toxic already exists")
    assert_error(api(toxi, "PATCH", f"/proxies/{p.name}/toxics/dup", {"attributes": {"latency": 1.5}}), 400)
    # a taken listen address: 500 from the bind, as the reference answers
    r = api(toxi, "POST", "/proxies", {"name": f"busy-{uuid.uuid4().hex[:6]}", "listen": p.listen,
                                       "upstream": echo.addr})
    assert_error(r, 500)
    assert "address already in use" in r.json()["error"]
    assert api(toxi, "GET", "/nothing-here").status_code == 404
    assert api(toxi, "DELETE", "/version").status_code == 405
    assert api(toxi, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"}).status_code == 403
    assert api(toxi, "POST", f"/proxies/{p.name}/toxics", {"type": "noop"}).status_code == 200  # 200, not 201
    assert api(toxi, "DELETE", f"/proxies/{p.name}/toxics/noop_downstream").status_code == 204


def test_inputs_the_reference_crashes_on_are_refused(toxi, mk, echo):
    embedded_only(toxi)
    p = mk(echo.addr)
    for attrs in ({"average_size": 1, "size_variation": 20}, {"average_size": 10, "size_variation": 10},
                  {"average_size": 0}):
        with pytest.raises(InvalidToxic):
            p.add_toxic(type="slicer", attributes=attrs)
    with pytest.raises(InvalidToxic):
        p.add_toxic(type="bandwidth", attributes={"rate": -5})
    assert rtt(p) >= 0 and toxi.alive()


def test_embedded_server_stays_on_loopback(toxi, mk):
    embedded_only(toxi)
    r = api(toxi, "POST", "/proxies", {"name": f"wide-{uuid.uuid4().hex[:6]}", "listen": "0.0.0.0:0",
                                       "upstream": "127.0.0.1:1"})
    assert_error(r, 500)
    assert "127.0.0.0/8" in r.json()["error"]
    p = mk("192.0.2.1:80")                      # accepted (upstream is not validated) but never dialled
    with connect(p) as s:
        assert outcome(s) == (b"", "eof")


def test_sigterm_stops_the_embedded_server_cleanly(tmp_path, monkeypatch, echo):
    monkeypatch.delenv(ENV_URL, raising=False)
    h = start_or_connect(log_dir=tmp_path)
    try:
        p = h.client.create(upstream=echo.addr, name="term", listen="127.0.0.1:0")
        s = connect(p)
        established(s)
        h.stop()
        assert h.child.popen.returncode == 0, h.child.log_tail()
        assert outcome(s) == (b"", "eof")
        s.close()
        assert refused(p)
        assert not h.alive()
    finally:
        h.stop()


@pytest.mark.skipif(bool(os.environ.get(ENV_URL)), reason="checks the embedded server's own CLI")
def test_cli_refuses_a_non_loopback_listen_address():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "orbitmq.cli.main", "toxiproxy", "--listen", "0.0.0.0:1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "127.0.0.0/8" in r.stdout


@pytest.mark.skipif(bool(os.environ.get(ENV_URL)), reason="checks the embedded server's own CLI")
def test_cli_config_file_populates_at_start(procs, tmp_path, echo):
    listen = f"127.0.0.1:{net.free_port()}"
    cfg = tmp_path / "proxies.json"
    cfg.write_text(json.dumps([{"name": "from-config", "listen": listen, "upstream": echo.addr}]))
    port = net.free_port()
    procs.start("toxiproxy-config", ["toxiproxy", "--listen", f"127.0.0.1:{port}", "--config", str(cfg)])
    h = ToxiproxyHandle("127.0.0.1", port)
    deadline = time.monotonic() + 30
    while not h.alive():
        assert time.monotonic() < deadline, procs.logs()
        time.sleep(0.05)
    p = h.client.get_proxy("from-config")
    assert p is not None and p.listen == listen and p.enabled
    assert rtt(p) >= 0
