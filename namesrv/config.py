"""The name server's settings: one dataclass whose field defaults are the documented defaults."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NamesrvConfig:
    """Settings of `orbitmq namesrv` (TOML table `[namesrv]` or top level)."""

    listen: str = field(default="127.0.0.1:9876", metadata={"doc": "gRPC listen address host:port"})
    expire_after_s: float = field(default=120.0, metadata={
        "doc": "a replica's entry expires this long after its last registration"})
    scan_interval_s: float = field(default=1.0, metadata={"doc": "how often expired entries are swept"})
    cluster_secret_file: str = field(default="", metadata={
        "doc": "file with the cluster secret: only registrations signed with it are accepted (brokers' "
               "cluster_secret_file). Empty: anyone who reaches the port can register a broker"})
    tls_cert_file: str = field(default="", metadata={
        "doc": "PEM certificate: serve gRPC over TLS and present it to the controllers (empty: plaintext)"})
    tls_key_file: str = field(default="", metadata={"doc": "PEM private key of tls_cert_file"})
    tls_ca_file: str = field(default="", metadata={
        "doc": "PEM CA bundle that signs the controllers' certificates (and client certificates when required)"})
    tls_client_auth: bool = field(default=False, metadata={
        "doc": "require a client certificate signed by tls_ca_file (brokers, producers, consumers, tools)"})
    controllers: list[str] = field(default_factory=list, metadata={
        "doc": "controller addresses: a broker claiming mastership is accepted only if the controller "
               "says it is the master at that epoch (empty: the claim is trusted)"})
    controller_refresh_s: float = field(default=10.0, metadata={
        "doc": "how often the controllers' member list is fetched (follows admin controller add-node/remove-node)"})
    dial_map: dict[str, str] = field(default_factory=dict, metadata={
        "doc": "[dial_map] table: advertised host:port -> host:port to dial (the controllers), like /etc/hosts"})
    metrics_listen: str = field(default="", metadata={
        "doc": "Prometheus /metrics HTTP address host:port (empty: off)"})
    log_level: str = field(default="INFO", metadata={"doc": "DEBUG, INFO, WARNING or ERROR"})
    max_inflight_requests: int = field(default=1024, metadata={
        "doc": "requests handled at once; more get RESOURCE_EXHAUSTED TOO_MANY_REQUESTS (0 = no limit)"})
    max_inflight_per_connection: int = field(default=256, metadata={
        "doc": "requests handled at once per client connection (0 = no limit)"})

    def validate(self) -> None:
        from orbitmq.common.config import ConfigError
        from orbitmq.common.net import split_addr

        for key, addr in (("listen", self.listen), ("metrics_listen", self.metrics_listen)):
            try:
                if addr or key == "listen":
                    split_addr(addr)
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
        if self.expire_after_s <= 0 or self.scan_interval_s <= 0 or self.controller_refresh_s <= 0:
            raise ConfigError("expire_after_s, scan_interval_s and controller_refresh_s must be > 0")
        for a in self.controllers:
            try:
                split_addr(a)
            except ValueError as e:
                raise ConfigError(f"controllers: {e}") from None
        from orbitmq.common.node_auth import check_secret_file
        check_secret_file(self.cluster_secret_file)
        from orbitmq.common.tls import validate_config
        validate_config(self)
