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
    log_level: str = field(default="INFO", metadata={"doc": "DEBUG, INFO, WARNING or ERROR"})

    def validate(self) -> None:
        from orbitmq.common.config import ConfigError
        from orbitmq.common.net import split_addr

        try:
            split_addr(self.listen)
        except ValueError as e:
            raise ConfigError(f"listen: {e}") from None
        if self.expire_after_s <= 0 or self.scan_interval_s <= 0:
            raise ConfigError("expire_after_s and scan_interval_s must be > 0")
