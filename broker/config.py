"""The broker process's settings: one dataclass whose field defaults are the documented defaults.

Top-level TOML keys are the fields below; the `[store]` table is passed through to the storage
engine's `StoreConfig` (its own keys and defaults), with `store_dir` and `flush_mode` filled in
from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MiB = 1024 * 1024


def _doc(default: Any, doc: str) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class BrokerConfig:
    """Settings of `orbitmq broker`."""

    listen: str = _doc("127.0.0.1:10911", "gRPC listen address host:port for clients")
    namesrv: list[str] = _doc([], "name server addresses (host:port); registers with every one")
    remoting_listen: str = _doc("", "framed TCP protocol address host:port for OrbitMQ's own clients (the same "
                                "requests as gRPC, cheaper per call; port 0: any free port; empty: off); "
                                "announced to the name servers, clients use it when announced")
    remoting_max_in_flight: int = _doc(1024, "framed protocol: requests one connection may have outstanding "
                                       "before the broker stops reading from it")
    metrics_listen: str = _doc("", "Prometheus /metrics HTTP address host:port (empty: off)")
    heap_keep_mb: int = _doc(64, "glibc malloc: MiB of freed heap the process keeps for reuse instead of "
                             "returning it to the OS, so that the buffers of large requests (batch records, "
                             "pull replies) do not page-fault afresh each time; 0: malloc's defaults "
                             "(common/heap.py)")
    cluster_secret_file: str = _doc("", "file with the cluster secret: this broker signs its name server "
                                    "registrations with it (the name servers' cluster_secret_file)")
    tls_cert_file: str = _doc("", "PEM certificate: serve gRPC and replication over TLS, and present it when "
                              "dialing name servers, controllers and the master (empty: plaintext)")
    tls_key_file: str = _doc("", "PEM private key of tls_cert_file")
    tls_ca_file: str = _doc("", "PEM CA bundle that signs the peers' certificates (name servers, controllers, "
                            "masters; and client certificates when required)")
    tls_client_auth: bool = _doc(False, "require a client certificate signed by tls_ca_file on the gRPC port "
                                 "(every producer, consumer and tool then needs one)")
    ha_tls_client_auth: bool = _doc(False, "require a certificate signed by tls_ca_file from followers on the "
                                    "replication port (mutual TLS between replicas)")
    auth_enabled: bool = _doc(False, "require signed requests (MQv2-HMAC-SHA1) and check ACL policies; users "
                              "and policies come from `controllers` (needs cluster_secret_file)")
    auth_max_skew_s: float = _doc(900.0, "refuse a signed request dated farther than this from this broker's clock")
    auth_refresh_s: float = _doc(2.0, "fetch user and ACL changes from the controllers this often")
    cluster: str = _doc("DefaultCluster", "cluster name")
    broker_set: str = _doc("broker-a", "broker set name (RocketMQ brokerName): master + its replicas")
    broker_id: int = _doc(0, "id within the broker set (0 = master in a standalone set)")
    store_dir: str = _doc("./orbitmq-store", "storage directory (commitlog, indexes, metadata)")
    ha_address: str = _doc("", "address followers replicate from (announced to the name servers)")
    flush_mode: str = _doc("async", "async: reply after the append; sync: reply after fdatasync")
    flush_timeout_s: float = _doc(5.0, "sync flush: FLUSH_TIMEOUT after this long")
    max_message_size: int = _doc(4 * MiB, "largest message body in bytes")
    max_request_size: int = _doc(32 * MiB, "largest gRPC request (a whole batch) in bytes")
    max_inflight_requests: int = _doc(1024, "requests handled at once; more get RESOURCE_EXHAUSTED "
                                      "TOO_MANY_REQUESTS (retriable; 0 = no limit)")
    max_inflight_per_connection: int = _doc(256, "requests handled at once per client connection (0 = no limit)")
    max_pending_send_bytes: int = _doc(256 * MiB, "message bytes of sends waiting for their flush or replication; "
                                       "more get BROKER_BUSY (retriable; 0 = no limit)")
    disk_refuse_ratio: float = _doc(0.95, "refuse sends (DISK_FULL) while the store's disk is used past this "
                                    "ratio; reads go on (1.0 = never)")
    auto_create_topics: bool = _doc(False, "accept sends to unknown topics, creating them")
    default_queues: int = _doc(4, "read/write queue count of auto-created topics")
    writable: bool = _doc(True, "false: a read-only broker (sends get NO_PERMISSION)")
    register_interval_s: float = _doc(30.0, "re-register with every name server this often")
    register_expire_s: float = _doc(0.0, "ask name servers to expire this entry after N s (0 = their default)")
    keepalive_interval_s: float = _doc(2.0, "ping on the keep-alive stream to each name server this often")
    long_poll_max_ms: int = _doc(30000, "cap on a pull's long-poll wait")
    pull_max_messages: int = _doc(1024, "cap on messages per pull")
    pull_max_bytes: int = _doc(4 * MiB, "cap (and default) on bytes per pull")
    consumer_expire_s: float = _doc(120.0, "a consumer client silent this long leaves its group")
    log_level: str = _doc("INFO", "DEBUG, INFO, WARNING or ERROR")
    store: dict[str, Any] = _doc({}, "[store] table: extra StoreConfig keys for the storage engine")
    # ---- HA (broker/ha/role_manager.py); used when ha_mode = "controller" ----
    ha_mode: str = _doc("standalone", "standalone: a lone master; controller: roles, epochs and replication")
    ha_listen: str = _doc("127.0.0.1:10912", "HA listen address (followers replicate from it when master)")
    controllers: list[str] = _doc([], "controller addresses (host:port), controller mode")
    ha_learner: bool = _doc(False, "a learner replicates asynchronously, never in the sync-state-set, never elected")
    ha_ack_mode: str = _doc("all", "all: every sync-state-set member holds a send; count: ha_min_replicas of them")
    ha_min_replicas: int = _doc(-1, "replicas (master included) that must hold a send; -1: 2 for sets of 3+, else 1")
    ha_ack_timeout_s: float = _doc(3.0, "REPLICATION_TIMEOUT if a send is not replicated within this")
    ha_lease_s: float = _doc(2.0, "master stops acknowledging (FENCED) this long after its last answered "
                             "controller heartbeat; must be below the controller's heartbeat timeout")
    ha_max_lag_s: float = _doc(3.0, "a follower not caught up for this long leaves the sync-state-set")
    ha_expiry_waits_s: float = _doc(600.0, "a master keeps expired segments that a follower or learner seen within "
                                    "this long still has to read (the disk ratio overrides)")
    ha_handoff_timeout_s: float = _doc(5.0, "SIGTERM on a master first hands mastership to a caught-up "
                                       "sync-state-set member (new sends held, none failed); give up and stop "
                                       "anyway after this long; 0: no handoff")
    ha_heartbeat_s: float = _doc(0.5, "replication stream heartbeat interval (both ways)")
    ha_idle_timeout_s: float = _doc(3.0, "close a replication stream silent for this long")
    ha_frame_bytes: int = _doc(1024 * 1024, "largest commitlog range sent in one replication frame")
    ha_handshake_timeout_s: float = _doc(5.0, "master: a replication connection must send its HELLO, then its "
                                         "first ACK, each within this")
    ha_max_connections: int = _doc(32, "master: replication connections at once; more get REFUSE BROKER_BUSY")
    ha_max_handshakes: int = _doc(8, "master: of which still before their HELLO (unknown peers)")
    controller_heartbeat_s: float = _doc(0.5, "heartbeat to the controllers this often")
    dial_map: dict[str, str] = _doc({}, "[dial_map] table: advertised host:port -> host:port to dial "
                                    "(name servers, controllers, masters' HA addresses), like /etc/hosts")

    def validate(self) -> None:
        from orbitmq.common.config import ConfigError
        from orbitmq.common.net import split_addr

        try:
            split_addr(self.listen)
            for a in self.namesrv:
                split_addr(a)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.remoting_listen:
            try:
                split_addr(self.remoting_listen)
            except ValueError as e:
                raise ConfigError(f"remoting_listen: {e}") from None
        if self.remoting_max_in_flight < 1:
            raise ConfigError("remoting_max_in_flight must be >= 1")
        if self.metrics_listen:
            try:
                split_addr(self.metrics_listen)
            except ValueError as e:
                raise ConfigError(f"metrics_listen: {e}") from None
        from orbitmq.common.node_auth import check_secret_file
        check_secret_file(self.cluster_secret_file)
        from orbitmq.common.tls import validate_config
        validate_config(self)
        if self.ha_tls_client_auth and not (self.tls_cert_file and self.tls_ca_file):
            raise ConfigError("ha_tls_client_auth needs tls_cert_file, tls_key_file and tls_ca_file")
        if self.flush_mode not in ("async", "sync"):
            raise ConfigError(f"flush_mode must be async or sync, got {self.flush_mode!r}")
        if self.broker_id < 0:
            raise ConfigError("broker_id must be >= 0")
        if not 0 <= self.heap_keep_mb <= 1024:
            raise ConfigError("heap_keep_mb must be in 0..1024 (0: malloc's defaults)")
        if not 0 < self.max_message_size <= self.max_request_size:
            raise ConfigError("need 0 < max_message_size <= max_request_size")
        for name in ("max_inflight_requests", "max_inflight_per_connection", "max_pending_send_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 = no limit)")
        if not 0 < self.disk_refuse_ratio <= 1:
            raise ConfigError("disk_refuse_ratio must be in (0, 1]")
        if not 1 <= self.default_queues <= 1024:
            raise ConfigError("default_queues must be in 1..1024")
        if self.ha_mode not in ("standalone", "controller"):
            raise ConfigError(f"ha_mode must be standalone or controller, got {self.ha_mode!r}")
        if self.ha_ack_mode not in ("all", "count"):
            raise ConfigError(f"ha_ack_mode must be all or count, got {self.ha_ack_mode!r}")
        if self.ha_min_replicas == 0 or self.ha_min_replicas < -1:
            raise ConfigError("ha_min_replicas must be >= 1 or -1 (automatic)")
        if self.auth_enabled and (not self.controllers or not self.cluster_secret_file):
            raise ConfigError("auth_enabled needs controllers (users and ACLs live there) and cluster_secret_file "
                              "(to fetch them)")
        if self.auth_max_skew_s <= 0 or self.auth_refresh_s <= 0:
            raise ConfigError("auth_max_skew_s and auth_refresh_s must be > 0")
        if self.ha_mode == "controller" and not self.controllers:
            raise ConfigError("ha_mode = controller needs controllers")
        for name in ("ha_ack_timeout_s", "ha_lease_s", "ha_max_lag_s", "ha_heartbeat_s", "ha_idle_timeout_s",
                     "controller_heartbeat_s", "ha_handshake_timeout_s", "ha_max_connections", "ha_max_handshakes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
        if self.ha_handoff_timeout_s < 0:
            raise ConfigError("ha_handoff_timeout_s must be >= 0")
        for name in ("register_interval_s", "keepalive_interval_s", "consumer_expire_s", "flush_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
