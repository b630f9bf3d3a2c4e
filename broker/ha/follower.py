"""The follower (or learner) side of replication, the shell: moves bytes and calls the store.

Owns: the TCP connection to the master's HA address, reconnecting with a short backoff, an idle
watchdog, and carrying out what the connection's state machine (ha_connection.py,
`FollowerConnection`: the handshake, the truncation point, epoch entries, acks, the confirm
offset) returns: truncate the store (or empty it and start its log at the master's first
retained offset) then the epoch file (durable), append epoch entries and raw
bytes (`store.append_raw` validates every record), wait for fdatasync before an ack in sync-flush
mode, set the confirm offset, send frames. It decides nothing itself and never decides roles; the
role manager starts and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orbitmq.broker.ha import protocol as hp
from orbitmq.broker.ha.connection import (
    Action,
    AppendEpoch,
    AppendRaw,
    ConnState,
    FollowerConnection,
    ReplicationRefused,
    Send,
    SetConfirm,
    StartLogAt,
    Truncate,
    TruncateEpochs,
    WaitFlushed,
)
from orbitmq.broker.ha.epoch_file import EpochFile
from orbitmq.broker.ha.master import idle_watchdog, store_confirm, store_max
from orbitmq.broker.ha.replica_store import ReplicaStore
from orbitmq.common import dial_map
from orbitmq.common.logs import kv
from orbitmq.common.net import split_addr

log = logging.getLogger("orbitmq.broker.ha")


def retry_delay(fails: int, cap_s: float) -> float:
    """The wait before reconnecting after `fails` sessions in a row that never got going: 10 ms,
    doubling up to `cap_s` (a new master may open its HA port a few ms after its followers are
    told about it: the first retries come quickly)."""
    return min(cap_s, 0.01 * 2 ** max(0, fails - 1))


@dataclass
class FollowerSettings:
    heartbeat_s: float = 1.0
    idle_timeout_s: float = 6.0
    reconnect_s: float = 0.3
    connect_timeout_s: float = 2.0
    ssl: Any = None   # ssl.SSLContext: dial the master over TLS (common/tls.py client_ssl_context)


class HAFollower:
    """Replicates from the master at `master_ha` until `stop()`."""

    def __init__(self, store: ReplicaStore, epochs: EpochFile, broker_id: int, learner: bool, master_ha: str,
                 settings: FollowerSettings, min_master_epoch: int = 0,
                 on_data: Callable[[], None] | None = None,
                 truncations: list[tuple[int, int]] | None = None, secret: bytes | None = None) -> None:
        self.secret = secret   # the cluster secret: signs our HELLO
        self.store = store
        self.epochs = epochs
        self.broker_id = broker_id
        self.learner = learner
        self.master_ha = master_ha
        self.settings = settings
        self.min_master_epoch = min_master_epoch
        self.on_data = on_data
        self.task: asyncio.Task | None = None
        self.connected = False
        self.master_max = 0
        self.master_confirm = 0
        self.truncations: list[tuple[int, int]] = truncations if truncations is not None else []  # (from, to)
        self.stats = {"frames": 0, "bytes": 0, "connects": 0}
        self.conn: FollowerConnection | None = None
        self._stopping = False
        cfg = getattr(store, "config", None)
        self._sync_flush = getattr(cfg, "flush_mode", "async") == "sync"

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    def lag(self) -> int:
        return max(0, self.master_max - store_max(self.store))

    async def _run(self) -> None:
        fails = 0
        while not self._stopping:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError, TimeoutError, hp.FrameError, ReplicationRefused) as e:
                if not self._stopping:
                    log.info("replication session ended %s", kv(master=self.master_ha, error=f"{type(e).__name__}: {e}"))
            except Exception:  # noqa: BLE001 - e.g. a store refusing bytes: log it and retry
                log.exception("replication session failed")
            finally:
                if self.connected:
                    fails = 0
                self.connected = False
            fails += 1
            await asyncio.sleep(retry_delay(fails, self.settings.reconnect_s))

    async def _session(self) -> None:
        host, port = split_addr(dial_map.resolve(self.master_ha))
        tls = {"ssl": self.settings.ssl, "ssl_handshake_timeout": self.settings.connect_timeout_s} \
            if self.settings.ssl else {}
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, **tls),
                                                self.settings.connect_timeout_s * (2 if tls else 1))
        self.stats["connects"] += 1
        conn = FollowerConnection(self.broker_id, self.learner, self.min_master_epoch, self.settings.heartbeat_s,
                                  self._sync_flush, self.secret)
        self.conn = conn
        watchdog: asyncio.Task | None = None
        try:
            await self._carry_out(conn.start(store_max(self.store), self.epochs.entries, store_confirm(self.store),
                                             int(time.time() * 1000)), writer)
            last_read = [time.monotonic()]
            while conn.state is ConnState.AWAIT_WELCOME:
                data = await asyncio.wait_for(reader.read(65536), 5.0)
                if not data:
                    raise ConnectionError("master closed during the handshake")
                await self._carry_out(conn.receive_data(data, time.monotonic()), writer)
            self.connected = True
            log.info("following %s", kv(broker_id=self.broker_id, master=self.master_ha, epoch=conn.master_epoch,
                                         from_=conn.own_max, learner=self.learner))
            watchdog = asyncio.create_task(idle_watchdog(lambda: last_read[0], self.settings.idle_timeout_s, writer))
            while True:
                data = await reader.read(1 << 20)
                last_read[0] = time.monotonic()
                if not data:
                    conn.connection_closed()
                    raise ConnectionError("master closed the stream")
                await self._carry_out(conn.receive_data(data, last_read[0]), writer)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            writer.close()

    async def _carry_out(self, actions: list[Action], writer: asyncio.StreamWriter) -> None:
        """Do what the connection's state machine decided, in order."""
        loop = asyncio.get_running_loop()
        appended = False
        for a in actions:
            if isinstance(a, Send):
                writer.write(hp.encode(a.frame))
                await writer.drain()
            elif isinstance(a, AppendRaw):
                self.store.append_raw(a.start, a.body)
                self.stats["frames"] += 1
                self.stats["bytes"] += len(a.body)
                appended = True
            elif isinstance(a, AppendEpoch):
                await loop.run_in_executor(None, self.epochs.append, a.epoch, a.start)
            elif isinstance(a, SetConfirm):
                if a.offset > store_confirm(self.store):
                    self.store.set_confirm_offset(a.offset)
            elif isinstance(a, WaitFlushed):
                await self.store.flushed(a.offset)   # sync flush: ack only what is on disk
            elif isinstance(a, Truncate):
                mx = store_max(self.store)
                log.warning("truncating divergent tail %s", kv(broker_id=self.broker_id, from_=mx, to=a.offset))
                await loop.run_in_executor(None, self.store.truncate, a.offset)
                self.truncations.append((mx, a.offset))
            elif isinstance(a, StartLogAt):
                mx, mn = store_max(self.store), int(self.store.min_physical_offset)
                log.warning("starting an empty log at the master's first retained offset %s",
                            kv(broker_id=self.broker_id, at=a.offset, dropped_from=mn, dropped_to=mx))
                await loop.run_in_executor(None, self.store.start_log_at, a.offset)
                if mx > mn:
                    self.truncations.append((mx, mn))
            elif isinstance(a, TruncateEpochs):
                await loop.run_in_executor(None, self.epochs.truncate, a.offset)
        if self.conn is not None:
            self.master_max, self.master_confirm = self.conn.master_max, self.conn.master_confirm
        if appended and self.on_data is not None:
            self.on_data()
