"""The follower (or learner) side of replication: copies the master's commitlog as raw bytes.

Owns: the connection to the master's HA address, the handshake (send our epoch list and max
offset, get the master's, compute the truncation point with epoch_truncation.py, truncate the
store and then the epoch file durably, report the point as our first ack), appending every DATA
frame as-is (`store.append_raw`, which validates each record), adding an epoch entry before the
first bytes of each new epoch, acking after every append (after fdatasync when the store flushes
synchronously) and at least every heartbeat, and the
confirm offset = min(master's confirm, own max). Reconnects with a short backoff. It never
decides roles; the role manager starts and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orbitmq.broker import ha_protocol as hp
from orbitmq.broker.epoch_file import EpochFile
from orbitmq.broker.epoch_truncation import find_truncation_point
from orbitmq.broker.ha_master import idle_watchdog, store_confirm, store_max
from orbitmq.common import dial_map
from orbitmq.common.logs import kv
from orbitmq.common.net import split_addr

log = logging.getLogger("orbitmq.broker.ha")


class ReplicationRefused(Exception):
    """The master refused us or the stream cannot continue (we reconnect)."""


@dataclass
class FollowerSettings:
    heartbeat_s: float = 1.0
    idle_timeout_s: float = 6.0
    reconnect_s: float = 0.3
    connect_timeout_s: float = 2.0


class HAFollower:
    """Replicates from the master at `master_ha` until `stop()`."""

    def __init__(self, store: Any, epochs: EpochFile, broker_id: int, learner: bool, master_ha: str,
                 settings: FollowerSettings, min_master_epoch: int = 0,
                 on_data: Callable[[], None] | None = None,
                 truncations: list[tuple[int, int]] | None = None) -> None:
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
                self.connected = False
            await asyncio.sleep(self.settings.reconnect_s)

    async def _session(self) -> None:
        host, port = split_addr(dial_map.resolve(self.master_ha))
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.settings.connect_timeout_s)
        self.stats["connects"] += 1
        loop = asyncio.get_running_loop()
        dec = hp.FrameDecoder()
        watchdog: asyncio.Task | None = None
        try:
            mx = store_max(self.store)
            writer.write(hp.encode(hp.Hello(self.broker_id, self.learner, mx, tuple(self.epochs.entries))))
            await writer.drain()
            welcome = None
            while welcome is None:
                data = await asyncio.wait_for(reader.read(65536), 5.0)
                if not data:
                    raise ConnectionError("master closed during the handshake")
                for f in dec.feed(data):
                    if isinstance(f, hp.Refuse):
                        raise ReplicationRefused(f"{f.code}: {f.message}")
                    if not isinstance(f, hp.Welcome):
                        raise hp.FrameError(f"expected WELCOME, got {type(f).__name__}")
                    welcome = f
            if welcome.master_epoch < self.min_master_epoch:
                raise ReplicationRefused(f"master epoch {welcome.master_epoch} is older than {self.min_master_epoch}")
            point = find_truncation_point(list(welcome.epochs), welcome.max_offset, self.epochs.entries, mx)
            if point.offset < mx:
                # durable: commitlog and indexes first, then the epoch file (so a crash in between
                # cannot attribute a kept tail to the wrong epoch), never the other way round
                log.warning("truncating divergent tail %s", kv(broker_id=self.broker_id, from_=mx, to=point.offset,
                                                                common_epoch=point.common_epoch,
                                                                master_epoch=welcome.master_epoch))
                await loop.run_in_executor(None, self.store.truncate, point.offset)
                self.truncations.append((mx, point.offset))
            # epochs starting at or after the point hold nothing we keep (also: an epoch we opened as
            # a master but never wrote in, entries past a tail cut by a crash); the master's data
            # re-adds the entries it needs
            await loop.run_in_executor(None, self.epochs.truncate, point.offset)
            mx = store_max(self.store)
            if mx == 0 and welcome.min_offset > 0:
                raise ReplicationRefused(f"master's log starts at {welcome.min_offset}; an empty follower cannot "
                                         "copy it from 0 (needs a store that can start at an offset)")
            self.master_max, self.master_confirm = welcome.max_offset, welcome.confirm_offset
            writer.write(hp.encode(hp.Ack(mx)))
            await writer.drain()
            self.connected = True
            log.info("following %s", kv(broker_id=self.broker_id, master=self.master_ha, master_id=welcome.master_id,
                                         epoch=welcome.master_epoch, from_=mx, learner=self.learner))
            last_ack = time.monotonic()
            last_read = [time.monotonic()]
            watchdog = asyncio.create_task(idle_watchdog(lambda: last_read[0], self.settings.idle_timeout_s, writer))
            while True:
                data = await reader.read(1 << 20)
                last_read[0] = time.monotonic()
                if not data:
                    dec.finish()
                    raise ConnectionError("master closed the stream")
                moved = False
                for f in dec.feed(data):
                    if isinstance(f, hp.Refuse):
                        raise ReplicationRefused(f"{f.code}: {f.message}")
                    if not isinstance(f, hp.Data):
                        raise hp.FrameError(f"unexpected {type(f).__name__} from the master")
                    self.master_max = f.master_max
                    self.master_confirm = f.confirm_offset
                    if f.body:
                        await self._append(f)
                        moved = True
                own = store_max(self.store)
                if moved and self._sync_flush:
                    await self.store.flushed(own)  # sync flush: ack only what is on disk
                c = min(self.master_confirm, own)
                if c > store_confirm(self.store):
                    self.store.set_confirm_offset(c)
                now = time.monotonic()
                if moved or now - last_ack >= self.settings.heartbeat_s:
                    writer.write(hp.encode(hp.Ack(own)))
                    await writer.drain()
                    last_ack = now
                if moved and self.on_data is not None:
                    self.on_data()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            writer.close()

    async def _append(self, f: hp.Data) -> None:
        own = store_max(self.store)
        if f.start != own:
            raise ReplicationRefused(f"DATA starts at {f.start}, our log ends at {own}")
        last = self.epochs.last()
        if last is None or last.epoch != f.epoch:
            if last is not None and f.epoch < last.epoch:
                raise ReplicationRefused(f"DATA of epoch {f.epoch} after our epoch {last.epoch}")
            # the entry goes first: bytes must never exist without the epoch that wrote them
            await asyncio.get_running_loop().run_in_executor(None, self.epochs.append, f.epoch, f.epoch_start)
        self.store.append_raw(f.start, f.body)
        self.stats["frames"] += 1
        self.stats["bytes"] += len(f.body)
