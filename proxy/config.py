"""Settings of `orbitmq proxy`: one dataclass whose field defaults are the documented defaults."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ProxyConfig:
    """Settings of `orbitmq proxy` (TOML table `[proxy]` or top level)."""

    mode: str = field(default="local", metadata={"doc": "local (embedded broker) or cluster (forward to brokers)"})
    listen: str = field(default="127.0.0.1:8081", metadata={"doc": "gRPC listen address host:port (clients' endpoint)"})
    advertise: str = field(default="", metadata={"doc": "host:port put in routes (default: listen)"})
    namesrv: list[str] = field(default_factory=list, metadata={"doc": "cluster mode: name server addresses"})
    data_dir: str = field(default="./orbitmq-proxy", metadata={"doc": "local mode: the embedded broker's store"})
    broker_name: str = field(default="local", metadata={"doc": "local mode: broker name in routes and handles"})
    auto_create_topics: bool = field(default=False, metadata={"doc": "local mode: create unknown topics"})
    default_queues: int = field(default=4, metadata={"doc": "queues of an auto-created topic"})
    groups: list[str] = field(default_factory=list, metadata={
        "doc": "local mode: consumer groups to create, NAME[:fifo][:max_attempts=N]"})
    flush_mode: str = field(default="async", metadata={"doc": "local mode: async or sync (group commit)"})
    max_message_size: int = field(default=4 * 1024 * 1024, metadata={"doc": "largest message body in bytes"})
    max_attempts: int = field(default=17, metadata={
        "doc": "deliveries before a message goes to %DLQ%<group> (a group's retry_max_times + 1 wins)"})
    default_invisible_s: float = field(default=60.0, metadata={
        "doc": "invisible time of a receive that names none (PushConsumer)"})
    max_long_polling_s: float = field(default=30.0, metadata={"doc": "longest a receive waits for messages"})
    retry_delays_s: list[float] = field(default_factory=lambda: [1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420,
                                                                 480, 540, 600, 1200, 1800, 3600, 7200], metadata={
        "doc": "PushConsumer redelivery backoff sent in settings (one per attempt)"})
    tx_check_interval_s: float = field(default=1.0, metadata={"doc": "how often orphaned half messages are looked for"})
    tx_check_after_s: float = field(default=6.0, metadata={
        "doc": "a transaction unresolved this long (and again after each check) gets a check sent to a producer "
               "of its topic (a producer's orphaned_transaction_recovery_duration wins for the first check)"})
    tx_max_checks: int = field(default=15, metadata={"doc": "checks before an unresolved transaction is rolled back"})
    tls_cert_file: str = field(default="", metadata={
        "doc": "PEM certificate: serve clients over TLS, and present it to brokers and name servers in cluster "
               "mode (empty: plaintext)"})
    tls_key_file: str = field(default="", metadata={"doc": "PEM private key of tls_cert_file"})
    tls_ca_file: str = field(default="", metadata={
        "doc": "PEM CA bundle: cluster mode dials brokers and name servers with TLS checked against it; with "
               "tls_client_auth it also signs the clients' certificates"})
    tls_client_auth: bool = field(default=False, metadata={"doc": "require a client certificate signed by tls_ca_file"})
    log_level: str = field(default="INFO", metadata={"doc": "DEBUG, INFO, WARNING or ERROR"})
    auth_enabled: bool = field(default=False, metadata={
        "doc": "require signed requests (the clients' Credentials) and check ACL policies; users and policies "
               "come from `controllers` (needs cluster_secret_file)"})
    controllers: list[str] = field(default_factory=list, metadata={"doc": "controller addresses (users and ACLs)"})
    cluster_secret_file: str = field(default="", metadata={
        "doc": "file with the cluster secret: fetches users from the controllers, signs calls to brokers"})
    auth_max_skew_s: float = field(default=900.0, metadata={
        "doc": "refuse a signed request dated farther than this from the proxy's clock (UTC or its local time)"})
    auth_refresh_s: float = field(default=2.0, metadata={"doc": "fetch user and ACL changes this often"})
    broker_protocol: str = field(default="auto", metadata={
        "doc": "cluster mode: how sends reach a broker: auto (its framed port when the routes announce one, "
               "else gRPC) or grpc"})

    def validate(self) -> None:
        from orbitmq.common.config import ConfigError
        from orbitmq.common.net import split_addr

        if self.mode not in ("local", "cluster"):
            raise ConfigError(f"mode must be local or cluster, got {self.mode!r}")
        try:
            split_addr(self.listen)
            if self.advertise:
                split_addr(self.advertise)
        except ValueError as e:
            raise ConfigError(f"listen/advertise: {e}") from None
        if self.broker_protocol not in ("auto", "grpc"):
            raise ConfigError(f"broker_protocol must be auto or grpc, got {self.broker_protocol!r}")
        if self.mode == "cluster" and not self.namesrv:
            raise ConfigError("cluster mode needs --namesrv")
        if self.max_attempts < 1 or self.default_queues < 1 or self.max_message_size < 1:
            raise ConfigError("max_attempts, default_queues and max_message_size must be >= 1")
        for g in self.groups:
            parse_group_spec(g)
        from orbitmq.common.tls import validate_config
        validate_config(self)
        if self.auth_enabled and (not self.controllers or not self.cluster_secret_file):
            raise ConfigError("auth_enabled needs controllers (users and ACLs live there) and cluster_secret_file")
        from orbitmq.common.node_auth import check_secret_file
        check_secret_file(self.cluster_secret_file)


def parse_group_spec(spec: str) -> tuple[str, bool, int | None]:
    """"NAME[:fifo][:max_attempts=N]" -> (name, fifo, max_attempts or None)."""
    from orbitmq.common.config import ConfigError

    name, *opts = spec.split(":")
    fifo, attempts = False, None
    for o in opts:
        if o == "fifo":
            fifo = True
        elif o.startswith("max_attempts="):
            try:
                attempts = int(o.split("=", 1)[1])
            except ValueError:
                raise ConfigError(f"group {spec!r}: max_attempts must be an integer") from None
            if attempts < 1:
                raise ConfigError(f"group {spec!r}: max_attempts must be >= 1")
        else:
            raise ConfigError(f"group {spec!r}: unknown option {o!r} (fifo, max_attempts=N)")
    if not name:
        raise ConfigError(f"group {spec!r}: empty name")
    return name, fifo, attempts
