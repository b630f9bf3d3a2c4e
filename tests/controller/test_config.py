"""Controller config: TOML [controller] table, flag overrides, validation errors."""

from __future__ import annotations

import argparse

import pytest

from orbitmq.cli.controller import add_flags, load_config
from orbitmq.common.config import ConfigError
from orbitmq.controller.config import ControllerConfig


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_flags(p)
    return p.parse_args(list(argv))


def test_toml_table_then_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("ORBITMQ_RAFT_SECRET", "s" * 32)
    f = tmp_path / "c1.toml"
    f.write_text('[controller]\nnode_id = "c1"\nlisten = "127.0.0.1:9878"\nraft_addr = "127.0.0.1:9888"\n'
                 'peers = ["127.0.0.1:9889", "127.0.0.1:9890"]\nheartbeat_timeout_s = 3.0\n')
    cfg = load_config(_args("--config", str(f), "--data-dir", "/tmp/x", "--set", "unclean_election=true"))
    assert (cfg.node_id, cfg.listen, cfg.peers, cfg.data_dir) == ("c1", "127.0.0.1:9878",
                                                                  ["127.0.0.1:9889", "127.0.0.1:9890"], "/tmp/x")
    assert cfg.heartbeat_timeout_s == 3.0 and cfg.unclean_election is True
    cfg = load_config(_args("--config", str(f), "--peers", "127.0.0.1:1,127.0.0.1:2", "--raft", "127.0.0.1:3"))
    assert cfg.peers == ["127.0.0.1:1", "127.0.0.1:2"] and cfg.raft_addr == "127.0.0.1:3"


@pytest.mark.parametrize("override, words", [
    ("broker_lease_s=3.0", "broker_lease_s must not exceed"),
    ("peers=127.0.0.1:9888", "must not include"),
    ("raft_max_timeout_s=0.5", "raft_max_timeout_s must exceed"),
    ("heartbeat_timeout_s=0", "heartbeat_timeout_s must be > 0"),
    ("listen=nowhere", "listen"),
    ("no_such_key=1", "unknown key"),
])
def test_bad_settings_are_refused_with_a_clear_error(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(_args("--set", override))


def test_defaults_give_failover_in_a_few_seconds():
    cfg = ControllerConfig()
    cfg.validate()
    assert cfg.heartbeat_timeout_s <= 3.0 and cfg.broker_lease_s <= cfg.heartbeat_timeout_s
    assert cfg.liveness_rebuild_s == max(cfg.heartbeat_timeout_s, cfg.raft_max_timeout_s + cfg.broker_lease_s)
