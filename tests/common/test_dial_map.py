"""The process dial map: advertised host:port -> host:port to dial."""

from __future__ import annotations

import pytest

from orbitmq.common import dial_map


@pytest.fixture(autouse=True)
def _clean():
    saved = dial_map.current()
    yield
    dial_map.install(saved, replace=True)


def test_parse_format_roundtrip_and_errors():
    m = dial_map.parse("127.0.0.1:1=127.0.0.1:2, 127.0.0.1:3=127.0.0.2:4")
    assert m == {"127.0.0.1:1": "127.0.0.1:2", "127.0.0.1:3": "127.0.0.2:4"}
    assert dial_map.parse(dial_map.format_map(m)) == m
    for bad in ("127.0.0.1:1", "x=127.0.0.1:2", "127.0.0.1:1=nope"):
        with pytest.raises(ValueError):
            dial_map.parse(bad)


def test_install_resolve_remove():
    dial_map.install({}, replace=True)
    assert dial_map.resolve("127.0.0.1:1") == "127.0.0.1:1"
    dial_map.install({"127.0.0.1:1": "127.0.0.1:9"})
    dial_map.install({"127.0.0.1:2": "127.0.0.1:8"})
    assert dial_map.resolve("127.0.0.1:1") == "127.0.0.1:9" and dial_map.resolve("127.0.0.1:2") == "127.0.0.1:8"
    dial_map.remove(["127.0.0.1:1"])
    assert dial_map.resolve("127.0.0.1:1") == "127.0.0.1:1"
    with pytest.raises(ValueError):
        dial_map.install({"bad": "127.0.0.1:1"})


def test_environment_variable_is_read_when_nothing_installed(monkeypatch):
    monkeypatch.setattr(dial_map, "_map", None)
    monkeypatch.setenv(dial_map.ENV, "127.0.0.1:5=127.0.0.1:6")
    assert dial_map.resolve("127.0.0.1:5") == "127.0.0.1:6"
