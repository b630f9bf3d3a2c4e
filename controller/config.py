"""The controller's settings: one dataclass whose field defaults are the documented defaults.

A 3-node deployment gives each node the same `peers` list minus itself, e.g. node 1:

    # controller1.toml
    [controller]
    node_id = "c1"
    listen = "127.0.0.1:9878"
    raft_addr = "127.0.0.1:9888"
    peers = ["127.0.0.1:9889", "127.0.0.1:9890"]
    data_dir = "./controller1"

(node 2: listen 9879, raft 9889, peers 9888 and 9890; node 3 likewise). Brokers list every
node's `listen` address in their `controllers` setting.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orbitmq.common.net import is_loopback, split_addr

SECRET_ENV = "ORBITMQ_RAFT_SECRET"
MIN_SECRET_LEN = 16


def _doc(default: Any, doc: str) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class ControllerConfig:
    """Settings of `orbitmq controller` (TOML table `[controller]` or top level)."""

    node_id: str = _doc("", "name of this node in logs (default: its raft address)")
    listen: str = _doc("127.0.0.1:9878", "gRPC listen address host:port (brokers and admin tools)")
    raft_addr: str = _doc("127.0.0.1:9888", "this node's Raft address host:port")
    peers: list[str] = _doc([], "the other nodes' Raft addresses (empty: a single-node controller)")
    data_dir: str = _doc("./orbitmq-controller", "Raft journal and snapshot directory")
    join: bool = _doc(False, "this node joins a running group (a new node before `orbitmq admin controller "
                      "add-node`, or a member restarted with an empty data_dir): peers = the current members; "
                      "it neither campaigns nor serves until it has heard from the leader and caught up "
                      "(then <data_dir>/raft.joined is written and the setting has no further effect)")
    heartbeat_timeout_s: float = _doc(2.5, "a broker silent this long is dead (a dead master is replaced)")
    broker_lease_s: float = _doc(2.0, "brokers' ha_lease_s: a master whose session closed is replaced no "
                                 "sooner than this after its last heartbeat (it may still acknowledge)")
    scan_interval_s: float = _doc(0.1, "how often the leader checks liveness and retries failed elections")
    election_retry_s: float = _doc(0.5, "a failed election is retried this often")
    unclean_election: bool = _doc(False, "elect outside the sync-state-set when no member is alive (may lose data)")
    min_in_sync_replicas: int = _doc(-1, "the broker sets' minimum replica rule for `remove-replica` (set it to the "
                                     "brokers' ha_min_replicas): a removal that leaves fewer replicas, or a "
                                     "smaller sync-state-set, is refused; -1: 2 for sets of 3+, else 1")
    commit_timeout_s: float = _doc(5.0, "a command not committed by a majority in this time fails")
    raft_min_timeout_s: float = _doc(0.5, "Raft election timeout, lower bound")
    raft_max_timeout_s: float = _doc(1.0, "Raft election timeout, upper bound")
    raft_append_period_s: float = _doc(0.1, "Raft leader heartbeat (append entries) period")
    raft_batch_appends: bool = _doc(False, "true: send log entries with the next periodic append (fewer, larger "
                                    "messages); false: at once (measured ~4x more commands/s, lower latency)")
    log_compaction_entries: int = _doc(5000, "snapshot (full dump) after this many log entries")
    raft_secret_file: str = _doc("", "file holding the group's shared Raft secret: it authenticates and "
                                 "encrypts every Raft link (same file content on every node; "
                                 "or set ORBITMQ_RAFT_SECRET). Required with peers")
    insecure_raft: bool = _doc(False, "run a multi-node group WITHOUT a Raft secret: anyone who reaches a "
                               "Raft port can run code in the controller. Loopback-only tests only "
                               "(refused unless every Raft address is 127.0.0.0/8 or localhost)")
    cluster_secret_file: str = _doc("", "file with the cluster secret: brokers' calls about themselves and "
                                    "admin writes (elect, clean) must be signed with it (brokers' and admin "
                                    "tools' cluster_secret_file). Empty: anyone may make them")
    tls_cert_file: str = _doc("", "PEM certificate: serve gRPC over TLS (brokers, name servers, admin tools); "
                              "empty: plaintext. Raft links are encrypted by raft_secret_file instead")
    tls_key_file: str = _doc("", "PEM private key of tls_cert_file")
    tls_ca_file: str = _doc("", "PEM CA bundle that signs client certificates (with tls_client_auth)")
    tls_client_auth: bool = _doc(False, "require a client certificate signed by tls_ca_file from every caller "
                                 "(mutual TLS: brokers, name servers, admin tools)")
    auth_admin_file: str = _doc("", "file with ACCESS_KEY:SECRET of an admin user the leader creates if that "
                                "access key does not exist (or $ORBITMQ_AUTH_ADMIN); manages users and ACLs")
    auth_max_skew_s: float = _doc(900.0, "a signed admin request dated farther than this from this node's "
                                  "clock is refused")
    metrics_listen: str = _doc("", "Prometheus /metrics HTTP address host:port (empty: off)")
    max_inflight_requests: int = _doc(1024, "requests handled at once; more get RESOURCE_EXHAUSTED "
                                      "TOO_MANY_REQUESTS (0 = no limit)")
    max_inflight_per_connection: int = _doc(256, "requests handled at once per client connection (0 = no limit)")
    log_level: str = _doc("INFO", "DEBUG, INFO, WARNING or ERROR")
    dial_map: dict[str, str] = _doc({}, "[dial_map] table: advertised host:port -> host:port to dial (peers' Raft "
                                    "addresses), like /etc/hosts")

    def validate(self) -> None:
        from orbitmq.common.config import ConfigError

        for key, addrs in (("listen", [self.listen]), ("raft_addr", [self.raft_addr]), ("peers", self.peers),
                           ("metrics_listen", [self.metrics_listen] if self.metrics_listen else [])):
            for addr in addrs:
                try:
                    split_addr(addr)
                except ValueError as e:
                    raise ConfigError(f"{key}: {e}") from None
        if self.raft_addr in self.peers:
            raise ConfigError("peers must not include this node's own raft_addr")
        for name in ("heartbeat_timeout_s", "broker_lease_s", "scan_interval_s", "election_retry_s",
                     "commit_timeout_s", "raft_min_timeout_s", "raft_append_period_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
        if self.broker_lease_s > self.heartbeat_timeout_s:
            raise ConfigError("broker_lease_s must not exceed heartbeat_timeout_s (a master must fence "
                              "itself before it can be replaced)")
        if self.raft_max_timeout_s <= self.raft_min_timeout_s:
            raise ConfigError("raft_max_timeout_s must exceed raft_min_timeout_s")
        if self.raft_min_timeout_s <= 3 * self.raft_append_period_s:
            raise ConfigError("raft_min_timeout_s must exceed 3 x raft_append_period_s")
        if self.min_in_sync_replicas == 0 or self.min_in_sync_replicas < -1:
            raise ConfigError("min_in_sync_replicas must be >= 1 or -1 (automatic)")
        if self.log_compaction_entries < 2:
            raise ConfigError("log_compaction_entries must be >= 2")
        from orbitmq.common.node_auth import check_secret_file

        self.raft_password()   # a missing, unreadable or weak secret fails at start, naming the file
        check_secret_file(self.cluster_secret_file)
        from orbitmq.common.tls import validate_config
        validate_config(self)
        if self.auth_admin_file:
            from orbitmq.common.credentials import load_file
            try:
                load_file(self.auth_admin_file)
            except ValueError as e:
                raise ConfigError(f"auth_admin_file {e}") from None
        if self.auth_max_skew_s <= 0:
            raise ConfigError("auth_max_skew_s must be > 0")
        if self.peers and self.insecure_raft:
            outside = [a for a in [self.raft_addr, *self.peers] if not is_loopback(split_addr(a)[0])]
            if outside:
                raise ConfigError(f"insecure_raft is only for loopback-only tests; {', '.join(outside)} "
                                  "is not a loopback address: set raft_secret_file instead")

    def cluster_secret(self) -> bytes | None:
        """The cluster secret nodes sign their calls with (None: calls are not authenticated)."""
        from orbitmq.common.node_auth import load_secret

        return load_secret(self.cluster_secret_file)

    def raft_password(self, env: Mapping[str, str] | None = None) -> str | None:
        """The secret that authenticates and encrypts Raft links (pysyncobj's `password`).

        From `raft_secret_file`, else $ORBITMQ_RAFT_SECRET. A multi-node group without one is
        refused unless `insecure_raft` (then None). A single node with none gets a random secret
        of its own, so its Raft port talks to nobody."""
        from orbitmq.common.config import ConfigError

        env = os.environ if env is None else env
        secret = ""
        if self.raft_secret_file:
            try:
                secret = Path(self.raft_secret_file).read_text().strip()
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"raft_secret_file {self.raft_secret_file}: cannot read it ({e})") from None
            where = f"raft_secret_file {self.raft_secret_file}"
        else:
            secret = env.get(SECRET_ENV, "").strip()
            where = f"${SECRET_ENV}"
        if secret and len(secret) < MIN_SECRET_LEN:
            raise ConfigError(f"{where}: the Raft secret must be at least {MIN_SECRET_LEN} characters")
        if secret:
            return secret
        if not self.peers:
            return secrets.token_hex(32)
        if self.insecure_raft:
            return None
        raise ConfigError(
            "a multi-node controller group needs a Raft secret: without one, anyone who reaches a Raft "
            f"port can run code in the controller. Put the same random secret (>= {MIN_SECRET_LEN} "
            f"characters; e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`) in a file on "
            f"every node and set raft_secret_file (--raft-secret-file), or ${SECRET_ENV}; "
            "insecure_raft=true is accepted for loopback-only tests")

    def random_raft_secret(self, env: Mapping[str, str] | None = None) -> bool:
        """True if this node's Raft secret is a random one of its own (a single node given none):
        no node can join it."""
        env = os.environ if env is None else env
        return not self.peers and not self.raft_secret_file and not env.get(SECRET_ENV, "").strip() \
            and not self.insecure_raft

    @property
    def liveness_rebuild_s(self) -> float:
        """How long a new leader collects heartbeats before it may elect: one heartbeat timeout,
        and at least until every lease an old, partitioned leader may still have renewed has run
        out (that leader steps down within raft_max_timeout_s of losing its majority)."""
        return max(self.heartbeat_timeout_s, self.raft_max_timeout_s + self.broker_lease_s)

    @property
    def name(self) -> str:
        return self.node_id or self.raft_addr
