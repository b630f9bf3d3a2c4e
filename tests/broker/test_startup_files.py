"""Files a broker reads at start: a corrupt one stops the start with an error naming the file,
instead of a broker that runs without a role (real `orbitmq broker` processes)."""

from __future__ import annotations

import subprocess

import pytest

from orbitmq.common import net, proc

pytestmark = pytest.mark.process


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage\x81", b"not-an-identity\n", b"c1#other-set#1#code\n"],
                         ids=["binary", "malformed", "other-set"])
def test_garbage_controller_identity_fails_start_naming_the_file(tmp_path, content):
    store = tmp_path / "store"
    store.mkdir()
    ident = store / "controller-identity"
    ident.write_bytes(content)
    argv = proc.orbitmq_argv(
        "broker", "--listen", f"127.0.0.1:{net.free_port()}", "--store-dir", str(store), "--cluster", "c1",
        "--broker-set", "bs1", "--set", "ha_mode=controller", "--set", f"ha_listen=127.0.0.1:{net.free_port()}",
        "--set", f"controllers=127.0.0.1:{net.free_port()}")
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"cannot start: {ident}" in p.stderr
    assert ident.read_bytes() == content   # nothing rewritten
