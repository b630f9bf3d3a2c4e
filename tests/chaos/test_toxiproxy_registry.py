"""The embedded Toxiproxy's pure core: every API answer (status, body, content type) and the
registry's state transitions, driven through `toxiproxy_api.handle` with a recording fake Runtime
(no sockets). API_CASES is the behaviour table of the reference server v2.12.0."""

from __future__ import annotations

import json

import pytest
from hypothesis import settings
from hypothesis import strategies as hs
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from orbitmq.chaos.toxiproxy_api import handle
from orbitmq.chaos.toxiproxy_registry import BindError, Registry, resolve_listen


class FakeRuntime:
    """Records every call; binds "ports" in a set; `busy` addresses fail like a taken port."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.bound: dict[int, str] = {}   # proxy uid -> bound address
        self.busy: set[str] = set()
        self.next_port = 40000

    def start(self, p):
        assert p.uid not in self.bound, "started twice without a stop"
        host, _, port = resolve_listen(p.listen).rpartition(":")
        host = host or "127.0.0.1"
        if port == "0":
            self.next_port += 1
            port = str(self.next_port)
        addr = f"{host}:{port}"
        if addr in self.busy or addr in self.bound.values():
            raise BindError(f"listen tcp {addr}: bind: address already in use")
        self.bound[p.uid] = addr
        self.calls.append(("start", p.name, addr))
        return addr

    def stop(self, p):
        assert p.uid in self.bound, "stopped while not started"
        del self.bound[p.uid]
        self.calls.append(("stop", p.name))

    def toxic_added(self, p, t):
        self.calls.append(("add", p.name, t.name))

    def toxic_updated(self, p, t):
        self.calls.append(("update", p.name, t.name, t.toxicity, dict(t.attributes)))

    def toxic_removed(self, p, t):
        self.calls.append(("remove", p.name, t.name))


class Api:
    def __init__(self) -> None:
        self.rt = FakeRuntime()
        self.reg = Registry(self.rt)

    def __call__(self, method, path, body=None, headers=None):
        raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        return handle(self.reg, method, path, {k.lower(): v for k, v in (headers or {}).items()}, raw)


def seeded() -> Api:
    """Proxy "a" (running, with a downstream latency and an upstream timeout) and "b" (disabled)."""
    api = Api()
    assert api("POST", "/proxies", {"name": "a", "listen": "127.0.0.1:20000", "upstream": "127.0.0.1:9"}).status == 201
    assert api("POST", "/proxies", {"name": "b", "listen": "localhost:0", "upstream": "u:1", "enabled": False}).status == 201
    assert api("POST", "/proxies/a/toxics", {"type": "latency", "attributes": {"latency": 5}}).status == 200
    assert api("POST", "/proxies/a/toxics", {"name": "t", "type": "timeout", "stream": "upstream"}).status == 200
    api.rt.calls.clear()
    return api


def err(msg, status):
    return {"error": msg, "status": status}


BAD = "bad request body: "
PAGE_404 = "404 page not found"  # mux's plain-text answer for an unknown path
# (name, method, path, body, status, expected JSON body or None to skip, extra check)
API_CASES = [
    # version, routing, guard
    ("version", "GET", "/version", None, 200, {"version": "2.12.0"}),
    ("unknown path", "GET", "/nope", None, 404, PAGE_404),
    ("trailing slash", "GET", "/proxies/", None, 404, PAGE_404),
    ("too deep", "GET", "/proxies/a/toxics/t/x", None, 404, PAGE_404),
    ("wrong method on /proxies", "DELETE", "/proxies", None, 405, None),
    ("wrong method on /version", "POST", "/version", None, 405, None),
    ("wrong method on /reset", "GET", "/reset", None, 405, None),
    ("wrong method on toxic", "PUT", "/proxies/a/toxics/t", None, 405, None),
    # proxies: create
    ("create", "POST", "/proxies", {"name": "c", "listen": "127.0.0.1:0", "upstream": "x:1"}, 201,
     {"name": "c", "listen": "127.0.0.1:40001", "upstream": "x:1", "enabled": True, "toxics": []}),
    ("create disabled keeps listen as sent", "POST", "/proxies",
     {"name": "c", "listen": "localhost:0", "upstream": "x:1", "enabled": False}, 201,
     {"name": "c", "listen": "localhost:0", "upstream": "x:1", "enabled": False, "toxics": []}),
    ("create without listen binds any port", "POST", "/proxies", {"name": "c", "upstream": "x:1"}, 201,
     {"name": "c", "listen": "127.0.0.1:40001", "upstream": "x:1", "enabled": True, "toxics": []}),
    ("create ignores unknown fields, folds case", "POST", "/proxies",
     {"NAME": "c", "Upstream": "x:1", "listen": "127.0.0.1:0", "junk": [1]}, 201, None),
    ("create bad json", "POST", "/proxies", b"{", 400, err(BAD + "unexpected EOF", 400)),
    ("create empty body", "POST", "/proxies", b"", 400, err(BAD + "EOF", 400)),
    ("create null body", "POST", "/proxies", b"null", 400, err("missing required field: name", 400)),
    ("create array body", "POST", "/proxies", [], 400,
     err(BAD + "json: cannot unmarshal array into Go value of type toxiproxy.Proxy", 400)),
    ("create wrong type", "POST", "/proxies", {"name": 5, "upstream": "x:1"}, 400,
     err(BAD + "json: cannot unmarshal number 5 into Go struct field Proxy.name of type string", 400)),
    ("create enabled not bool", "POST", "/proxies", {"name": "c", "upstream": "x:1", "enabled": "yes"}, 400, None),
    ("create missing name", "POST", "/proxies", {"upstream": "x:1"}, 400, err("missing required field: name", 400)),
    ("create empty name", "POST", "/proxies", {"name": "", "upstream": "x:1"}, 400,
     err("missing required field: name", 400)),
    ("create missing upstream", "POST", "/proxies", {"name": "c"}, 400, err("missing required field: upstream", 400)),
    ("create duplicate", "POST", "/proxies", {"name": "a", "upstream": "x:1"}, 409, err("proxy already exists", 409)),
    ("create duplicate disabled", "POST", "/proxies", {"name": "b", "upstream": "x:1", "enabled": False}, 409,
     err("proxy already exists", 409)),
    ("create listen in use", "POST", "/proxies", {"name": "c", "listen": "127.0.0.1:20000", "upstream": "x:1"}, 500,
     err("listen tcp 127.0.0.1:20000: bind: address already in use", 500)),
    # proxies: read
    ("show", "GET", "/proxies/b", None, 200,
     {"name": "b", "listen": "localhost:0", "upstream": "u:1", "enabled": False, "toxics": []}),
    ("show unknown", "GET", "/proxies/zz", None, 404, err("proxy not found", 404)),
    ("show percent-encoded name", "GET", "/proxies/%61", None, 200, None),
    # proxies: update
    ("update disable", "PATCH", "/proxies/a", {"enabled": False}, 200, None),
    ("update via POST", "POST", "/proxies/a", {"enabled": False}, 200, None),
    ("update ignores name", "PATCH", "/proxies/a", {"name": "zz"}, 200, None),
    ("update unknown", "PATCH", "/proxies/zz", {"enabled": False}, 404, err("proxy not found", 404)),
    ("update unknown before bad body", "PATCH", "/proxies/zz", b"{", 404, err("proxy not found", 404)),
    ("update bad json", "PATCH", "/proxies/a", b"[1", 400, None),
    ("update wrong type", "PATCH", "/proxies/a", {"enabled": 1}, 400, None),
    ("update bad listen", "PATCH", "/proxies/a", {"listen": "nope"}, 500,
     err("address nope: missing port in address", 500)),
    ("update listen in use", "PATCH", "/proxies/b", {"listen": "127.0.0.1:20000", "enabled": True}, 500,
     err("listen tcp 127.0.0.1:20000: bind: address already in use", 500)),
    ("update empty body", "PATCH", "/proxies/a", b"", 400, err(BAD + "EOF", 400)),
    # proxies: delete
    ("delete", "DELETE", "/proxies/a", None, 204, None),
    ("delete unknown", "DELETE", "/proxies/zz", None, 404, err("proxy not found", 404)),
    # toxics: list / show
    ("toxic index", "GET", "/proxies/a/toxics", None, 200, [
        {"attributes": {"timeout": 0}, "name": "t", "type": "timeout", "stream": "upstream", "toxicity": 1},
        {"attributes": {"latency": 5, "jitter": 0}, "name": "latency_downstream", "type": "latency",
         "stream": "downstream", "toxicity": 1}]),
    ("toxic index unknown proxy", "GET", "/proxies/zz/toxics", None, 404, err("proxy not found", 404)),
    ("toxic show", "GET", "/proxies/a/toxics/t", None, 200,
     {"attributes": {"timeout": 0}, "name": "t", "type": "timeout", "stream": "upstream", "toxicity": 1}),
    ("toxic show unknown", "GET", "/proxies/a/toxics/zz", None, 404, err("toxic not found", 404)),
    ("toxic show unknown proxy", "GET", "/proxies/zz/toxics/t", None, 404, err("proxy not found", 404)),
    # toxics: create
    ("toxic create defaults", "POST", "/proxies/a/toxics", {"type": "bandwidth"}, 200,
     {"attributes": {"rate": 0}, "name": "bandwidth_downstream", "type": "bandwidth", "stream": "downstream",
      "toxicity": 1}),
    ("toxic create stream kept as sent", "POST", "/proxies/a/toxics", {"type": "slow_close", "stream": "UpStream",
                                                                       "toxicity": 0.25}, 200,
     {"attributes": {"delay": 0}, "name": "slow_close_UpStream", "type": "slow_close", "stream": "UpStream",
      "toxicity": 0.25}),
    ("toxic create on disabled proxy", "POST", "/proxies/b/toxics", {"type": "noop"}, 200, None),
    ("toxic create every type", "POST", "/proxies/a/toxics",
     {"type": "slicer", "attributes": {"average_size": 10, "size_variation": 5, "delay": 20000}}, 200, None),
    ("toxic create toxicity out of range accepted", "POST", "/proxies/a/toxics",
     {"type": "limit_data", "toxicity": 7, "attributes": {"bytes": 3}}, 200, None),
    ("toxic create unknown proxy", "POST", "/proxies/zz/toxics", {"type": "latency"}, 404, err("proxy not found", 404)),
    ("toxic create unknown proxy before bad body", "POST", "/proxies/zz/toxics", b"{", 404, None),
    ("toxic create bad json", "POST", "/proxies/a/toxics", b"{]", 400, None),
    ("toxic create bad stream", "POST", "/proxies/a/toxics", {"type": "latency", "stream": "sideways"}, 400,
     err("stream was invalid, can be either upstream or downstream", 400)),
    ("toxic create empty stream", "POST", "/proxies/a/toxics", {"type": "latency", "stream": ""}, 400, None),
    ("toxic create bad type", "POST", "/proxies/a/toxics", {"type": "fire"}, 400, err("invalid toxic type", 400)),
    ("toxic create missing type", "POST", "/proxies/a/toxics", {}, 400, err("invalid toxic type", 400)),
    ("toxic create stream checked before type", "POST", "/proxies/a/toxics", {"type": "fire", "stream": "x"}, 400,
     err("stream was invalid, can be either upstream or downstream", 400)),
    ("toxic create duplicate name", "POST", "/proxies/a/toxics", {"type": "latency"}, 409,
     err("toxic already exists", 409)),
    ("toxic create duplicate across directions", "POST", "/proxies/a/toxics", {"name": "t", "type": "latency"}, 409,
     err("toxic already exists", 409)),
    ("toxic create duplicate before bad attributes", "POST", "/proxies/a/toxics",
     {"name": "t", "type": "latency", "attributes": {"latency": "x"}}, 409, None),
    ("toxic create attribute wrong type", "POST", "/proxies/a/toxics", {"type": "timeout", "attributes": {"timeout": "1"}},
     400, None),
    ("toxic create attribute float", "POST", "/proxies/a/toxics", {"type": "timeout", "attributes": {"timeout": 1.5}},
     400, None),
    ("toxic create attributes not object", "POST", "/proxies/a/toxics", {"type": "timeout", "attributes": 3}, 400, None),
    ("toxic create toxicity wrong type", "POST", "/proxies/a/toxics", {"type": "timeout", "toxicity": "1"}, 400, None),
    ("toxic create name wrong type", "POST", "/proxies/a/toxics", {"type": "timeout", "name": 1}, 400, None),
    ("toxic create slicer variation above average (reference crashes)", "POST", "/proxies/a/toxics",
     {"type": "slicer", "attributes": {"average_size": 1, "size_variation": 20}}, 400, None),
    ("toxic create slicer zero average (reference hangs)", "POST", "/proxies/a/toxics", {"type": "slicer"}, 400, None),
    ("toxic create negative bandwidth (reference panics)", "POST", "/proxies/a/toxics",
     {"type": "bandwidth", "attributes": {"rate": -1}}, 400, None),
    # toxics: update
    ("toxic update merges attributes", "PATCH", "/proxies/a/toxics/latency_downstream",
     {"attributes": {"jitter": 2}, "toxicity": 0.5, "type": "timeout", "stream": "upstream", "name": "q"}, 200,
     {"attributes": {"latency": 5, "jitter": 2}, "name": "latency_downstream", "type": "latency",
      "stream": "downstream", "toxicity": 0.5}),
    ("toxic update via POST", "POST", "/proxies/a/toxics/t", {"attributes": {"timeout": 9}}, 200, None),
    ("toxic update empty object", "PATCH", "/proxies/a/toxics/t", {}, 200, None),
    ("toxic update unknown toxic", "PATCH", "/proxies/a/toxics/zz", {}, 404, err("toxic not found", 404)),
    ("toxic update unknown toxic before bad body", "PATCH", "/proxies/a/toxics/zz", b"{", 404, None),
    ("toxic update unknown proxy", "PATCH", "/proxies/zz/toxics/t", {}, 404, err("proxy not found", 404)),
    ("toxic update bad json", "PATCH", "/proxies/a/toxics/t", b"{", 400, None),
    ("toxic update wrong attribute type", "PATCH", "/proxies/a/toxics/t", {"attributes": {"timeout": []}}, 400, None),
    ("toxic update wrong toxicity type", "PATCH", "/proxies/a/toxics/t", {"toxicity": "0"}, 400, None),
    # toxics: delete
    ("toxic delete", "DELETE", "/proxies/a/toxics/t", None, 204, None),
    ("toxic delete unknown", "DELETE", "/proxies/a/toxics/zz", None, 404, err("toxic not found", 404)),
    ("toxic delete unknown proxy", "DELETE", "/proxies/zz/toxics/t", None, 404, err("proxy not found", 404)),
    # reset / populate
    ("reset", "POST", "/reset", None, 204, None),
    ("populate empty", "POST", "/populate", [], 201, {"proxies": None}),
    ("populate null", "POST", "/populate", b"null", 201, {"proxies": None}),
    ("populate object", "POST", "/populate", {"name": "x"}, 400, None),
    ("populate bad json", "POST", "/populate", b"[", 400, None),
    ("populate missing upstream", "POST", "/populate",
     [{"name": "x", "upstream": "u:1", "listen": "127.0.0.1:0"}, {"name": "y"}], 400,
     {"error": "missing required field: upstream at proxy 2", "status": 400, "proxies": None}),
    ("populate missing name", "POST", "/populate", [{"upstream": "u:1"}], 400,
     {"error": "missing required field: name at proxy 1", "status": 400, "proxies": None}),
    ("populate entry wrong type", "POST", "/populate", [{"name": "x", "upstream": 1}], 400, None),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_case(case):
    _name, method, path, body, status, expected = case
    api = seeded()
    r = api(method, path, body)
    assert r.status == status, r.body
    assert r.headers.get("X-Toxiproxy-Request-Id")
    if status in (204, 405):
        assert r.body == b""
    elif expected == PAGE_404:
        assert r.body == b"404 page not found\n" and r.content_type == "text/plain; charset=utf-8"
        return
    elif status >= 400 and path != "/populate":
        # Go's http.Error: the JSON error object, a newline, text/plain
        assert r.content_type == "text/plain; charset=utf-8" and r.body.endswith(b"\n")
        got = json.loads(r.body)
        assert set(got) == {"error", "status"} and got["status"] == status
    else:
        assert r.content_type.startswith("application/json")
    if expected is not None:
        assert json.loads(r.body) == expected


def test_api_cases_cover_every_route_and_status():
    statuses = {c[4] for c in API_CASES}
    assert statuses == {200, 201, 204, 400, 404, 405, 409, 500}
    assert len(API_CASES) >= 80


def test_browser_user_agent_is_refused_on_known_routes_only():
    api = seeded()
    r = api("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"})
    assert (r.status, r.body) == (403, b"User agent not allowed\n")
    assert api("GET", "/nope", headers={"User-Agent": "Mozilla/5.0"}).status == 404
    assert api("GET", "/proxies", headers={"User-Agent": "curl/8"}).status == 200


def test_version_body_is_byte_exact():
    r = seeded()("GET", "/version")
    assert r.body == b'{"version": "2.12.0"}\n' and r.content_type == "application/json;charset=utf-8"


def test_index_is_keyed_and_sorted_by_name():
    api = seeded()
    api("POST", "/proxies", {"name": "0first", "upstream": "u:1", "enabled": False})
    r = api("GET", "/proxies")
    assert list(r.json()) == ["0first", "a", "b"]
    assert r.json()["a"]["toxics"][0]["name"] == "t"  # upstream chain listed first


# -- state transitions and the runtime calls they make ----------------------------------------


def test_create_starts_and_binds():
    api = Api()
    r = api("POST", "/proxies", {"name": "p", "listen": "localhost:0", "upstream": "u:1"})
    assert r.json()["listen"] == "127.0.0.1:40001"
    assert api.rt.calls == [("start", "p", "127.0.0.1:40001")]


def test_failed_create_leaves_nothing():
    api = Api()
    api.rt.busy.add("127.0.0.1:5")
    assert api("POST", "/proxies", {"name": "p", "listen": "127.0.0.1:5", "upstream": "u:1"}).status == 500
    assert api("GET", "/proxies/p").status == 404


def test_disable_enable_keeps_toxics_and_rebinds_the_same_address():
    api = seeded()
    assert api("PATCH", "/proxies/a", {"enabled": False}).json()["enabled"] is False
    r = api("PATCH", "/proxies/a", {"enabled": True}).json()
    assert r["enabled"] is True and r["listen"] == "127.0.0.1:20000" and len(r["toxics"]) == 2
    assert api.rt.calls == [("stop", "a"), ("start", "a", "127.0.0.1:20000")]


def test_update_same_resolved_listen_does_not_restart():
    api = seeded()
    r = api("PATCH", "/proxies/a", {"listen": "localhost:20000", "upstream": "127.0.0.1:9"})
    assert r.status == 200 and api.rt.calls == []
    assert r.json()["listen"] == "127.0.0.1:20000"


def test_update_upstream_restarts_even_for_a_trailing_space():
    api = seeded()
    r = api("PATCH", "/proxies/a", {"upstream": "127.0.0.1:9 "})
    assert r.json()["upstream"] == "127.0.0.1:9 " and r.json()["enabled"]
    assert api.rt.calls == [("stop", "a"), ("start", "a", "127.0.0.1:20000")]


def test_update_listen_while_disabled_only_stores_it():
    api = seeded()
    r = api("PATCH", "/proxies/b", {"listen": "127.0.0.1:30000"}).json()
    assert r["listen"] == "127.0.0.1:30000" and r["enabled"] is False and api.rt.calls == []


def test_update_listen_and_disable_in_one_call():
    api = seeded()
    r = api("PATCH", "/proxies/a", {"listen": "127.0.0.1:30000", "enabled": False}).json()
    assert r["listen"] == "127.0.0.1:30000" and not r["enabled"]
    assert api.rt.calls == [("stop", "a")]


def test_failed_rebind_leaves_proxy_disabled_with_the_new_address():
    api = seeded()
    api.rt.busy.add("127.0.0.1:30000")
    assert api("PATCH", "/proxies/a", {"listen": "127.0.0.1:30000"}).status == 500
    r = api("GET", "/proxies/a").json()
    assert r["enabled"] is False and r["listen"] == "127.0.0.1:30000"


def test_delete_stops_running_proxy_only():
    api = seeded()
    api("DELETE", "/proxies/a")
    api("DELETE", "/proxies/b")
    assert api.rt.calls == [("stop", "a")]
    assert api("GET", "/proxies").json() == {}


def test_toxic_changes_reach_the_runtime_in_order():
    api = seeded()
    api("POST", "/proxies/a/toxics", {"name": "x", "type": "limit_data", "attributes": {"bytes": 10}})
    api("PATCH", "/proxies/a/toxics/x", {"attributes": {"bytes": 8}})
    api("DELETE", "/proxies/a/toxics/x")
    assert api.rt.calls == [("add", "a", "x"), ("update", "a", "x", 1.0, {"bytes": 8}), ("remove", "a", "x")]


def test_failed_toxic_update_changes_nothing():
    api = seeded()
    before = api("GET", "/proxies/a/toxics/latency_downstream").json()
    assert api("PATCH", "/proxies/a/toxics/latency_downstream",
               {"attributes": {"jitter": 3, "latency": "x"}}).status == 400
    assert api("GET", "/proxies/a/toxics/latency_downstream").json() == before
    assert api.rt.calls == []


def test_slicer_update_is_validated_after_merging():
    api = seeded()
    api("POST", "/proxies/a/toxics", {"name": "s", "type": "slicer", "attributes": {"average_size": 10}})
    assert api("PATCH", "/proxies/a/toxics/s", {"attributes": {"size_variation": 10}}).status == 400
    assert api("PATCH", "/proxies/a/toxics/s", {"attributes": {"size_variation": 9}}).status == 200


def test_reset_starts_disabled_proxies_and_removes_all_toxics():
    api = seeded()
    api("POST", "/proxies/b/toxics", {"type": "noop"})
    api.rt.calls.clear()
    assert api("POST", "/reset").status == 204
    assert api.rt.calls == [("remove", "a", "t"), ("remove", "a", "latency_downstream"),
                            ("start", "b", "127.0.0.1:40001"), ("remove", "b", "noop_downstream")]
    assert all(p["enabled"] and p["toxics"] == [] for p in api("GET", "/proxies").json().values())


def test_reset_stops_at_a_proxy_that_cannot_bind():
    api = seeded()
    api("PATCH", "/proxies/b", {"listen": "127.0.0.1:31000"})
    api.rt.busy.add("127.0.0.1:31000")
    r = api("POST", "/reset")
    assert r.status == 500 and "address already in use" in r.json()["error"]


def test_populate_keeps_identical_proxies_exactly_and_replaces_changed_ones():
    api = seeded()
    api("PATCH", "/proxies/b", {"listen": "127.0.0.1:30000"})
    api.rt.calls.clear()
    r = api("POST", "/populate", [
        {"name": "a", "listen": "localhost:20000", "upstream": "127.0.0.1:9", "enabled": False},  # same: kept
        {"name": "b", "listen": "127.0.0.1:30000", "upstream": "changed:1"},                       # replaced
        {"name": "n", "listen": "127.0.0.1:0", "upstream": "u:2", "enabled": False},               # new, disabled
    ])
    assert r.status == 201, r.body
    out = {p["name"]: p for p in r.json()["proxies"]}
    assert [p["name"] for p in r.json()["proxies"]] == ["a", "b", "n"]
    assert out["a"]["enabled"] and len(out["a"]["toxics"]) == 2       # untouched, whatever `enabled` said
    assert out["b"]["upstream"] == "changed:1" and out["b"]["enabled"] and out["b"]["toxics"] == []
    assert out["n"]["enabled"] is False
    assert api.rt.calls == [("start", "b", "127.0.0.1:30000")]


def test_populate_with_port_zero_always_replaces():
    api = Api()
    body = [{"name": "z", "listen": "127.0.0.1:0", "upstream": "u:1"}]
    first = api("POST", "/populate", body).json()["proxies"][0]["listen"]
    second = api("POST", "/populate", body).json()["proxies"][0]["listen"]
    assert first != second
    assert [c[0] for c in api.rt.calls] == ["start", "stop", "start"]


def test_populate_has_no_rollback():
    api = Api()
    api.rt.busy.add("127.0.0.1:7")
    r = api("POST", "/populate", [{"name": "ok", "listen": "127.0.0.1:0", "upstream": "u:1"},
                                  {"name": "bad", "listen": "127.0.0.1:7", "upstream": "u:1"},
                                  {"name": "never", "listen": "127.0.0.1:0", "upstream": "u:1"}])
    assert r.status == 500 and r.content_type == "application/json"
    body = r.json()
    assert list(body) == ["error", "status", "proxies"]
    assert [p["name"] for p in body["proxies"]] == ["ok"]
    assert sorted(api("GET", "/proxies").json()) == ["ok"]


def test_populate_replacement_that_fails_leaves_the_old_one_stopped():
    api = seeded()
    api.rt.busy.add("127.0.0.1:31000")
    r = api("POST", "/populate", [{"name": "a", "listen": "127.0.0.1:31000", "upstream": "127.0.0.1:9"}])
    assert r.status == 500
    a = api("GET", "/proxies/a").json()
    assert a["enabled"] is False and len(a["toxics"]) == 2


@pytest.mark.parametrize("listen,resolved", [
    ("localhost:1", "127.0.0.1:1"), ("LOCALHOST:1", "127.0.0.1:1"), (":0", ":0"), ("", ":0"), ("127.0.0.1:80", "127.0.0.1:80"),
    ("[::1]:5", "[::1]:5"), ("10.1.2.3:9", "10.1.2.3:9"),
])
def test_resolve_listen(listen, resolved):
    assert resolve_listen(listen) == resolved


@pytest.mark.parametrize("listen", ["nope", "1.2.3.4", "h:x", "h:70000", "a:b:1", "[::1", "[::1]", "example.com:1"])
def test_resolve_listen_rejects(listen):
    with pytest.raises(ValueError):
        resolve_listen(listen)


# -- random operation sequences: invariants ----------------------------------------------------

NAMES = hs.sampled_from(["p", "q", "r"])
TOXIC_NAMES = hs.sampled_from(["t1", "t2", "latency_downstream", "timeout_upstream"])
JSONISH = hs.recursive(hs.none() | hs.booleans() | hs.integers(-3, 2**64) | hs.floats(allow_nan=False)
                       | hs.sampled_from(["upstream", "downstream", "latency", "timeout", "slicer", "x", ""]),
                       lambda c: hs.lists(c, max_size=3) | hs.dictionaries(
                           hs.sampled_from(["name", "type", "stream", "toxicity", "attributes", "listen", "upstream",
                                            "enabled", "latency", "bytes", "average_size", "size_variation", "rate"]),
                           c, max_size=5), max_leaves=10)


class RegistryMachine(RuleBasedStateMachine):
    """Any sequence of API calls keeps the registry and the runtime consistent."""

    @initialize()
    def setup(self):
        self.api = Api()

    def call(self, method, path, body):
        r = self.api(method, path, body)
        assert r.status in (200, 201, 204, 400, 404, 409, 500), (method, path, body, r.status, r.body)
        if r.status >= 400 and path != "/populate":
            assert json.loads(r.body)["status"] == r.status

    @rule(name=NAMES, port=hs.sampled_from([0, 21000, 21001]), enabled=hs.booleans())
    def create(self, name, port, enabled):
        self.call("POST", "/proxies", {"name": name, "listen": f"127.0.0.1:{port}", "upstream": "u:1",
                                       "enabled": enabled})

    @rule(name=NAMES, body=JSONISH)
    def update(self, name, body):
        self.call("PATCH", f"/proxies/{name}", body)

    @rule(name=NAMES, enabled=hs.booleans(), port=hs.sampled_from([None, 0, 21000, 21001]))
    def toggle(self, name, enabled, port):
        body = {"enabled": enabled} | ({} if port is None else {"listen": f"localhost:{port}"})
        self.call("PATCH", f"/proxies/{name}", body)

    @rule(name=NAMES)
    def delete(self, name):
        self.call("DELETE", f"/proxies/{name}", None)

    @rule(name=NAMES, body=JSONISH)
    def add_toxic(self, name, body):
        self.call("POST", f"/proxies/{name}/toxics", body)

    @rule(name=NAMES, tname=TOXIC_NAMES, kind=hs.sampled_from(["latency", "timeout", "limit_data"]),
          stream=hs.sampled_from(["upstream", "downstream", "UPSTREAM"]))
    def add_valid_toxic(self, name, tname, kind, stream):
        self.call("POST", f"/proxies/{name}/toxics", {"name": tname, "type": kind, "stream": stream})

    @rule(name=NAMES, tname=TOXIC_NAMES, body=JSONISH)
    def update_toxic(self, name, tname, body):
        self.call("PATCH", f"/proxies/{name}/toxics/{tname}", body)

    @rule(name=NAMES, tname=TOXIC_NAMES)
    def delete_toxic(self, name, tname):
        self.call("DELETE", f"/proxies/{name}/toxics/{tname}", None)

    @rule()
    def reset(self):
        self.call("POST", "/reset", None)

    @rule(entries=hs.lists(hs.tuples(NAMES, hs.sampled_from([0, 21000, 21002]), hs.sampled_from(["u:1", "u:2"]),
                                      hs.sampled_from([None, True, False])), max_size=3))
    def populate(self, entries):
        body = [{"name": n, "listen": f"127.0.0.1:{p}", "upstream": u} | ({} if e is None else {"enabled": e})
                for n, p, u, e in entries]
        self.call("POST", "/populate", body)

    @invariant()
    def consistent(self):
        reg, rt = self.api.reg, self.api.rt
        running = {p.uid: p for p in reg.proxies.values() if p.enabled}
        assert set(rt.bound) == set(running)                       # enabled <=> bound, nothing leaked
        for uid, p in running.items():
            assert rt.bound[uid] == p.listen                        # shows the bound address
        assert len(set(rt.bound.values())) == len(rt.bound)         # no address bound twice
        for p in reg.proxies.values():
            names = [t.name for t in p.toxics()]
            assert len(names) == len(set(names))                    # toxic names unique per proxy
            for d, chain in p.chains.items():
                assert all(t.direction == d for t in chain)
            listing = json.loads(self.api("GET", f"/proxies/{p.name}/toxics", None).body)
            assert [t["name"] for t in listing] == names


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
