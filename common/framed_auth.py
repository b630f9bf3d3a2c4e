"""Credentials in a framed connection's HELLO (pure: the clock and the nonce are passed in).

The framed protocol (common/framing.py) has no per-request metadata, so a connection signs once,
in its HELLO, and every request on it then runs as that identity (the broker checks each request
against the identity's ACL: broker/remoting_auth.py):
- a user: the HELLO fields `authorization` and `x-mq-date-time`, exactly what signs a gRPC call
  (common/request_auth.py), so the same users, secrets and clock-skew rule apply;
- a cluster node (the proxy forwarding sends): `orbitmq-node-auth`, the cluster secret's signature
  (common/node_auth.py) of method `HELLO_METHOD` over a random nonce sent beside it
  (`orbitmq-nonce`, hex). The broker accepts each nonce once within the signature's skew window
  (`NonceWindow`), so a captured node HELLO cannot open a second connection.
"""

from __future__ import annotations

from collections import OrderedDict

from orbitmq.common import node_auth, request_auth
from orbitmq.common.credentials import Credentials

HELLO_METHOD = "/orbitmq.framed/Hello"
NODE_FIELD = node_auth.HEADER
NONCE_FIELD = "orbitmq-nonce"
NONCE_BYTES = 16


def user_fields(creds: Credentials, now_s: float) -> dict[str, str]:
    """HELLO fields that sign a connection as `creds`' user at `now_s`."""
    return dict(request_auth.signing_metadata(creds.access_key, creds.secret, now_s))


def node_fields(secret: bytes, now_ms: int, nonce: bytes) -> dict[str, str]:
    """HELLO fields that prove the cluster secret, for the connection identified by `nonce`."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"the nonce must be {NONCE_BYTES} bytes")
    return {NODE_FIELD: node_auth.sign(secret, HELLO_METHOD, nonce, now_ms), NONCE_FIELD: nonce.hex()}


def verify_node(secret: bytes, fields: dict, now_ms: int, seen: NonceWindow) -> None:
    """Raise node_auth.NodeAuthError unless `fields` are a fresh node HELLO signed with `secret`."""
    raw = fields.get(NONCE_FIELD)
    try:
        nonce = bytes.fromhex(raw) if isinstance(raw, str) else b""
    except ValueError:
        nonce = b""
    if len(nonce) != NONCE_BYTES:
        raise node_auth.NodeAuthError(f"node HELLO: {NONCE_FIELD} must be {NONCE_BYTES} bytes in hex")
    header = fields.get(NODE_FIELD)
    node_auth.verify(secret, HELLO_METHOD, nonce, header if isinstance(header, str) else None, now_ms)
    if not seen.fresh(nonce, now_ms):
        raise node_auth.NodeAuthError("node HELLO: this nonce was already used (a replayed HELLO)")


class NonceWindow:
    """Nonces accepted in the last `window_ms` (the signature's skew window on both sides: a
    signature older than that is refused by its date anyway). At most `max_size` are kept; when
    full, the oldest go first, and a HELLO is refused rather than remembered beyond the window."""

    def __init__(self, window_ms: int = 2 * node_auth.MAX_SKEW_MS, max_size: int = 100_000) -> None:
        self.window_ms = window_ms
        self.max_size = max_size
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def fresh(self, nonce: bytes, now_ms: int) -> bool:
        """True (and remember it) if `nonce` was not accepted within the window."""
        seen = self._seen
        while seen:
            oldest, at = next(iter(seen.items()))
            if now_ms - at <= self.window_ms:
                break
            seen.popitem(last=False)
        if nonce in seen:
            return False
        if len(seen) >= self.max_size:
            return False
        seen[nonce] = now_ms
        return True
