"""Load limits as rules (pure: no sockets, threads or clocks): how many requests may be in flight,
how many bytes of sends may be held, and when the disk is too full to write.

Owns: `InflightLimits` (requests in flight per connection and in all; a request over either limit
is refused TOO_MANY_REQUESTS, retriable), `ByteBudget` (bytes held by sends from their admission
until their answer, i.e. while they wait for a flush or the in-sync replicas; over it a send is
refused BROKER_BUSY, retriable), and `disk_refusal` (writes refused DISK_FULL once the store's
file system is used past a ratio; reads go on). The shells: common/limits_grpc.py (the gRPC
interceptor) and the broker's send path (broker/service.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LimitRefusal:
    code: str       # ErrorCode name: TOO_MANY_REQUESTS, BROKER_BUSY, DISK_FULL
    message: str


@dataclass
class InflightLimits:
    """Counts requests in flight; `admit(conn)` takes a slot or says why not, `release(conn)` frees it.
    A limit of 0 means unlimited."""

    per_connection: int
    total: int
    in_flight: int = 0
    _by_conn: dict[str, int] = field(default_factory=dict)

    def admit(self, conn: str) -> LimitRefusal | None:
        n = self._by_conn.get(conn, 0)
        if self.per_connection and n >= self.per_connection:
            return LimitRefusal("TOO_MANY_REQUESTS", f"{n} requests already in flight on this connection "
                                f"(max_inflight_per_connection {self.per_connection}); retry later")
        if self.total and self.in_flight >= self.total:
            return LimitRefusal("TOO_MANY_REQUESTS", f"{self.in_flight} requests already in flight on this "
                                f"server (max_inflight_requests {self.total}); retry later")
        self._by_conn[conn] = n + 1
        self.in_flight += 1
        return None

    def release(self, conn: str) -> None:
        n = self._by_conn.get(conn, 0)
        if n <= 0:
            raise ValueError(f"release without admit for {conn!r}")
        if n == 1:
            del self._by_conn[conn]
        else:
            self._by_conn[conn] = n - 1
        self.in_flight -= 1

    def of(self, conn: str) -> int:
        return self._by_conn.get(conn, 0)


@dataclass
class ByteBudget:
    """Bytes held by sends not yet answered. `take(n)` or a refusal, `give(n)` when answered. One
    send larger than the whole budget is let in when nothing else is held (it could never fit
    otherwise; its size is bounded by max_request_size). A limit of 0 means unlimited."""

    limit: int
    held: int = 0

    def take(self, n: int) -> LimitRefusal | None:
        if self.limit and self.held and self.held + n > self.limit:
            return LimitRefusal("BROKER_BUSY", f"{self.held} bytes of sends are waiting for their flush or "
                                f"replication (max_pending_send_bytes {self.limit}); retry later")
        self.held += n
        return None

    def give(self, n: int) -> None:
        if n > self.held:
            raise ValueError(f"giving back {n} bytes but only {self.held} are held")
        self.held -= n


def disk_refusal(used: int, total: int, max_ratio: float) -> LimitRefusal | None:
    """DISK_FULL once `used / total` passes `max_ratio` (1.0 or more: never; unknown total: never)."""
    if total <= 0 or max_ratio >= 1.0:
        return None
    ratio = used / total
    if ratio > max_ratio:
        return LimitRefusal("DISK_FULL", f"the store's disk is {ratio:.1%} full (disk_refuse_ratio "
                            f"{max_ratio:.1%}): writes refused until space is freed; reads go on")
    return None
