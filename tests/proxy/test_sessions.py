"""The proxy's registry of connected clients (proxy/sessions.py)."""

from __future__ import annotations


def test_sessions_registry():
    from orbitmq.proxy.sessions import Sessions

    s = Sessions()
    a = s.touch("a")
    a.client_type, a.topics = 1, {"t"}
    assert s.producers_of("t") == []  # no open Telemetry stream
    a.outbox = object()
    assert s.producers_of("t") == [a] and s.producers_of("u") == []
    b = s.touch("b")
    b.last_seen -= 1000
    assert s.expire(120) == 1 and set(s.by_id) == {"a"}  # a has a stream: kept
    s.drop("a")
    assert s.by_id == {}
