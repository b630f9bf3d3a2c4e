"""Shared fixtures: temporary dirs, free loopback ports, and real child processes stopped by PID."""

from __future__ import annotations

import pytest

from orbitmq.common import dial_map, proc
from orbitmq.common import tls as tlsmod


@pytest.fixture
def procs(tmp_path):
    """Start real `orbitmq` processes; every one is stopped (SIGTERM, then SIGKILL) at teardown.

    Usage: child = procs.start("namesrv", ["namesrv", "--listen", addr])
    """

    class Procs:
        def __init__(self) -> None:
            self.children: list[proc.Child] = []

        def start(self, name: str, args: list[str], env: dict | None = None) -> proc.Child:
            log = tmp_path / f"{name}.log"
            child = proc.start(name, proc.orbitmq_argv(*args), log_path=log, env=env)
            self.children.append(child)
            return child

        def logs(self) -> str:
            return "\n".join(f"--- {c.name} (pid {c.pid}) ---\n{c.log_tail(60)}" for c in self.children)

    p = Procs()
    try:
        yield p
    finally:
        proc.stop_all(p.children)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure of a test that used `procs`, attach the children's log tails to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed and "procs" in item.fixturenames:
        p = item.funcargs.get("procs")
        if p is not None:
            rep.sections.append(("child process logs", p.logs()))


@pytest.fixture(scope="module", autouse=True)
def _no_leaked_process_defaults():
    """A test module must leave this process's dial map and default TLS as it found them.

    Both are process-wide: a chaos cluster's client dial map left behind sends a later test's
    client, whose name server happens to get the same port, to a proxy that no longer exists.
    A leak is undone (so later modules run clean) and reported as an error of the leaking module.
    """
    saved_map, saved_tls = dial_map.current(), tlsmod.installed()
    yield
    leaked_map, leaked_tls = dial_map.current(), tlsmod.installed()
    dial_map.install(saved_map, replace=True)
    tlsmod.install(saved_tls)
    assert leaked_map == saved_map, f"this module left dial map entries behind: {leaked_map}"
    assert leaked_tls is saved_tls, "this module left a default TLS config installed"
