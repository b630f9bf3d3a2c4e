"""Node-to-node request signing with the cluster secret (pure: no sockets, the clock is passed in).

A node proves it holds the cluster secret by sending, in the `orbitmq-node-auth` metadata key,
`v1:<unix ms>:<hex HMAC-SHA256(secret, "v1|method|ms|sha256(request bytes)")>` where the request
bytes are the protobuf's deterministic serialization. The receiver recomputes the MAC over the
request it decoded and refuses a wrong or missing one, and one older or newer than `max_skew_ms`
(a captured header cannot be replayed later, nor on another request or method).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

HEADER = "orbitmq-node-auth"
VERSION = "v1"
MAX_SKEW_MS = 60_000
MIN_SECRET_LEN = 16


class NodeAuthError(Exception):
    """A request that is not signed, or not signed with this cluster's secret (reason in words)."""


def load_secret(path: str) -> bytes | None:
    """The cluster secret from `path` (stripped), None for an empty path (no secret); errors
    (ValueError) name the file."""
    if not path:
        return None
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cluster_secret_file {path}: cannot read it ({e})") from None
    if len(secret) < MIN_SECRET_LEN:
        raise ValueError(f"cluster_secret_file {path}: the secret must be at least {MIN_SECRET_LEN} characters")
    return secret.encode()


def check_secret_file(path: str) -> None:
    """Config validation: a ConfigError naming the file unless it is empty or holds a usable secret."""
    from orbitmq.common.config import ConfigError

    try:
        load_secret(path)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _mac(secret: bytes, method: str, ms: int, payload: bytes) -> str:
    msg = f"{VERSION}|{method}|{ms}|{hashlib.sha256(payload).hexdigest()}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def sign(secret: bytes, method: str, payload: bytes, now_ms: int) -> str:
    """The header value for `payload` (a request's bytes) sent to `method` at `now_ms`."""
    return f"{VERSION}:{now_ms}:{_mac(secret, method, now_ms, payload)}"


def verify(secret: bytes, method: str, payload: bytes, header: str | None, now_ms: int,
           max_skew_ms: int = MAX_SKEW_MS) -> None:
    """Raise NodeAuthError unless `header` signs `payload` for `method` with `secret`, recently."""
    if not header:
        raise NodeAuthError(f"{method}: not signed with the cluster secret ({HEADER} missing)")
    parts = header.split(":")
    if len(parts) != 3 or parts[0] != VERSION or not parts[1].isdigit():
        raise NodeAuthError(f"{method}: malformed {HEADER}")
    ms = int(parts[1])
    if abs(now_ms - ms) > max_skew_ms:
        raise NodeAuthError(f"{method}: signature time is {abs(now_ms - ms) / 1000:.0f} s away from this "
                            f"node's clock (at most {max_skew_ms / 1000:.0f} s)")
    if not hmac.compare_digest(parts[2], _mac(secret, method, ms, payload)):
        raise NodeAuthError(f"{method}: bad signature (not this cluster's secret, or the request was altered)")
