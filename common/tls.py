"""TLS settings of one process, and the ssl contexts built from them (the replication stream).

Owns: `TlsConfig` (certificate, key, CA, whether client certificates are required), reading it
from a process config's `tls_*` keys or from the environment (clients and tools), checking the
files at start with errors that name the file, the "plaintext: ..." / "tls: ..." line every server
logs first, and `ssl.SSLContext`s for asyncio streams. gRPC credentials and channels are built in
`tls_grpc.py` from the same `TlsConfig`; certificates for a local cluster in `tls_certs.py`.

Rules: a server speaks TLS iff `cert_file` is set (then `key_file` is required). A process dials
with TLS iff `cert_file` or `ca_file` is set: it checks the server's certificate against `ca_file`
(the system's roots if empty) and presents its own certificate when it has one, so a peer that
requires client certificates (`client_auth`, mutual TLS) accepts it. Plaintext is the default.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from typing import Any

ENV_CA = "ORBITMQ_TLS_CA"
ENV_CERT = "ORBITMQ_TLS_CERT"
ENV_KEY = "ORBITMQ_TLS_KEY"
ENV_SERVER_NAME = "ORBITMQ_TLS_SERVER_NAME"


class TlsError(ValueError):
    """A TLS setting or file is wrong; the message names the key or file."""


@dataclass(frozen=True)
class TlsConfig:
    """One process's TLS material (PEM file paths). Empty everything: plaintext."""

    cert_file: str = ""      # this process's certificate chain (server, and client cert when dialing)
    key_file: str = ""       # its private key
    ca_file: str = ""        # CA bundle: verifies the servers dialed, and client certificates
    client_auth: bool = False  # server side: require a client certificate signed by ca_file (mutual TLS)
    server_name: str = ""    # dialing: name expected in the server's certificate (default: the dialed host)

    @property
    def serves_tls(self) -> bool:
        return bool(self.cert_file)

    @property
    def dials_tls(self) -> bool:
        return bool(self.cert_file or self.ca_file)

    def validate(self) -> None:
        """Consistency of the keys (not the files: `check_files`)."""
        if bool(self.cert_file) != bool(self.key_file):
            raise TlsError("tls_cert_file and tls_key_file go together (set both or neither)")
        if self.client_auth and not (self.cert_file and self.ca_file):
            raise TlsError("tls_client_auth needs tls_cert_file, tls_key_file and tls_ca_file (the CA that "
                           "signs the client certificates)")

    def check_files(self) -> None:
        """Read every file and check that the key matches the certificate; TlsError names the file."""
        self.validate()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        for key, path in (("tls_cert_file", self.cert_file), ("tls_key_file", self.key_file),
                          ("tls_ca_file", self.ca_file)):
            if path and not os.path.isfile(path):
                raise TlsError(f"{key}: no such file {path}")
        if self.cert_file:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except (ssl.SSLError, OSError) as e:
                raise TlsError(f"tls_cert_file {self.cert_file} / tls_key_file {self.key_file}: not a PEM "
                               f"certificate and its matching private key ({e})") from None
        if self.ca_file:
            try:
                ctx.load_verify_locations(cafile=self.ca_file)
            except (ssl.SSLError, OSError) as e:
                raise TlsError(f"tls_ca_file {self.ca_file}: not a PEM CA bundle ({e})") from None

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(certificate chain, private key, CA bundle) bytes, None where unset."""
        def _r(p: str) -> bytes | None:
            if not p:
                return None
            try:
                with open(p, "rb") as f:
                    return f.read()
            except OSError as e:
                raise TlsError(f"cannot read {p}: {e}") from None
        return _r(self.cert_file), _r(self.key_file), _r(self.ca_file)


PLAINTEXT = TlsConfig()


def from_config(cfg: Any) -> TlsConfig:
    """The `tls_cert_file`, `tls_key_file`, `tls_ca_file`, `tls_client_auth`, `tls_server_name` keys
    of a process config dataclass (missing keys: unset)."""
    return TlsConfig(cert_file=str(getattr(cfg, "tls_cert_file", "") or ""),
                     key_file=str(getattr(cfg, "tls_key_file", "") or ""),
                     ca_file=str(getattr(cfg, "tls_ca_file", "") or ""),
                     client_auth=bool(getattr(cfg, "tls_client_auth", False)),
                     server_name=str(getattr(cfg, "tls_server_name", "") or ""))


def validate_config(cfg: Any) -> None:
    """For a config's `validate()`: the tls_* keys are consistent and their files usable
    (raises the project's ConfigError)."""
    from orbitmq.common.config import ConfigError

    try:
        from_config(cfg).check_files()
    except TlsError as e:
        raise ConfigError(str(e)) from None


def from_env(env: Any = None) -> TlsConfig:
    """Clients and tools: $ORBITMQ_TLS_CA, $ORBITMQ_TLS_CERT, $ORBITMQ_TLS_KEY, $ORBITMQ_TLS_SERVER_NAME."""
    env = os.environ if env is None else env
    return TlsConfig(cert_file=env.get(ENV_CERT, ""), key_file=env.get(ENV_KEY, ""), ca_file=env.get(ENV_CA, ""),
                     server_name=env.get(ENV_SERVER_NAME, ""))


def env_lines(cfg: TlsConfig) -> list[str]:
    """`export` lines for a cluster.env that make clients and tools dial with `cfg`."""
    out = []
    for name, value in ((ENV_CA, cfg.ca_file), (ENV_CERT, cfg.cert_file), (ENV_KEY, cfg.key_file),
                        (ENV_SERVER_NAME, cfg.server_name)):
        if value:
            out.append(f"export {name}={value}")
    return out


_lock = threading.Lock()
_default: TlsConfig | None = None


def install(cfg: TlsConfig | None) -> None:
    """Set this process's default dialing TLS (None: back to the environment's)."""
    global _default
    with _lock:
        _default = cfg


def installed() -> TlsConfig | None:
    """What `install` set (None when nothing is installed and the environment's applies)."""
    with _lock:
        return _default


def default() -> TlsConfig:
    """What a client object dials with when given no `tls=`: the installed one, else the environment's."""
    with _lock:
        return _default if _default is not None else from_env()


def resolve(value: TlsConfig | str | bool | None) -> TlsConfig:
    """A client's `tls=` argument: a TlsConfig; a CA file path (str); False for plaintext; None for
    the process default (`default()`)."""
    if value is None:
        return default()
    if value is False:
        return PLAINTEXT
    if isinstance(value, str):
        return TlsConfig(ca_file=value)
    if isinstance(value, TlsConfig):
        return value
    raise TypeError(f"tls must be a TlsConfig, a CA file path, False or None, got {value!r}")


def mode_line(cfg: TlsConfig, what: str, listen: str) -> str:
    """The first log line of a server: how `what` on `listen` is reached."""
    if not cfg.serves_tls:
        return (f"plaintext: {what} on {listen} is unencrypted and unauthenticated at the transport level "
                "(set tls_cert_file, tls_key_file and tls_ca_file for TLS)")
    auth = "client certificates required (mutual TLS)" if cfg.client_auth else "no client certificates required"
    return f"tls: {what} on {listen} serves TLS with {cfg.cert_file}, CA {cfg.ca_file or '-'}, {auth}"


def server_ssl_context(cfg: TlsConfig) -> ssl.SSLContext | None:
    """An asyncio server context (None if `cfg` serves plaintext); requires client certificates
    signed by `ca_file` when `client_auth`."""
    if not cfg.serves_tls:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    if cfg.ca_file:
        ctx.load_verify_locations(cafile=cfg.ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED if cfg.client_auth else ssl.CERT_NONE
    return ctx


def client_ssl_context(cfg: TlsConfig) -> ssl.SSLContext | None:
    """An asyncio client context (None if `cfg` dials plaintext): verifies the server against
    `ca_file` (host name checked) and presents this process's certificate if it has one."""
    if not cfg.dials_tls:
        return None
    ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ctx
