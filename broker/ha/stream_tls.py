"""TLS of the replication stream: the ssl contexts a broker's master and follower sides use,
from the broker's `tls_*` keys (common/tls.py). The master requires followers' certificates when
`ha_tls_client_auth` is set; a follower always presents its own certificate if it has one."""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

from orbitmq.common import tls as tlsmod


def ha_server_ssl(config: Any) -> ssl.SSLContext | None:
    """The master's context for `ha_listen` (None: plaintext)."""
    cfg = tlsmod.from_config(config)
    cfg = dataclasses.replace(cfg, client_auth=bool(getattr(config, "ha_tls_client_auth", False)))
    return tlsmod.server_ssl_context(cfg)


def ha_client_ssl(config: Any) -> ssl.SSLContext | None:
    """The follower's context for dialing the master's HA address (None: plaintext)."""
    return tlsmod.client_ssl_context(tlsmod.from_config(config))
