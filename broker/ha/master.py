"""The master side of replication, the shell: serves the commitlog to followers over TCP.

Owns: the HA listener, per follower a socket driven by the connection's state machine
(ha_connection.py `MasterConnection`: handshake, where to stream from, the DATA frames to send,
heartbeats, acks), reading the bytes each planned frame names from the store, feeding acks into
the sync-state-set core, setting the store's confirm offset, and the waiters of sends that wait
for replication (resolved by the ack policy core). The rules live in ha_connection.py,
sync_state.py and ack_policy.py; this module moves bytes and keeps time. It never writes the
commitlog itself. Limits: at most `max_connections` connections and `max_handshakes` of them
before HELLO (others get REFUSE BROKER_BUSY at once), `handshake_timeout_s` for the HELLO and for
the first ACK, a peer's frames at most `protocol.HELLO_MAX_PAYLOAD`; who is let in is
hello_check.py's rule (signature, controller's view, one live connection per id).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orbitmq.broker.ha import protocol as hp
from orbitmq.broker.ha.ack_policy import AckPolicy, Verdict, acknowledged_upto, evaluate
from orbitmq.broker.ha.connection import (
    Acked,
    ConnState,
    MasterConnection,
    MasterLog,
    ReplicationRefused,
    Send,
)
from orbitmq.broker.ha.connection import Hello as HelloEvent
from orbitmq.broker.ha.epoch_file import EpochFile
from orbitmq.broker.ha.hello_check import HelloPolicy, ReplayGuard, may_replace
from orbitmq.broker.ha.replica_store import ReplicaStore
from orbitmq.broker.ha.replication_hooks import ReplicationError
from orbitmq.broker.ha.sync_state import SyncStateSet
from orbitmq.common.logs import kv
from orbitmq.common.net import split_addr

log = logging.getLogger("orbitmq.broker.ha")


def store_max(store: ReplicaStore) -> int:
    return int(store.max_physical_offset)


def store_min(store: ReplicaStore) -> int:
    return int(store.min_physical_offset)


def store_confirm(store: ReplicaStore) -> int:
    return int(store.confirm_offset)


@dataclass
class MasterSettings:
    frame_bytes: int = 1024 * 1024
    heartbeat_s: float = 1.0
    idle_timeout_s: float = 6.0
    max_lag_s: float = 5.0
    ack_timeout_s: float = 3.0
    policy: AckPolicy = AckPolicy()  # noqa: RUF009 - frozen dataclass instance
    ssl: Any = None   # ssl.SSLContext: serve the stream over TLS (common/tls.py server_ssl_context)
    handshake_timeout_s: float = 5.0   # HELLO, then the first ACK, each within this
    max_connections: int = 32          # replication connections at once (handshaking or streaming)
    max_handshakes: int = 8            # of which not yet past HELLO
    replace_after_s: float = 2.0       # a connected id is taken over only after this long silent


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class Waker:
    """A cheap wake-up flag: `set()`, `clear()`, `await wait(timeout)` (no task per wait, unlike
    asyncio.wait_for on an Event)."""

    def __init__(self) -> None:
        self._flag = False
        self._fut: asyncio.Future | None = None

    def set(self) -> None:
        self._flag = True
        if self._fut is not None:
            _resolve(self._fut)

    def clear(self) -> None:
        self._flag = False

    async def wait(self, timeout: float) -> None:
        if self._flag:
            return
        loop = asyncio.get_running_loop()
        fut = self._fut = loop.create_future()
        handle = loop.call_later(timeout, _resolve, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._fut = None


async def idle_watchdog(last_read: Callable[[], float], timeout: float, writer: asyncio.StreamWriter) -> None:
    """Close `writer` once nothing was read for `timeout` (instead of a wait_for per read)."""
    while True:
        left = timeout - (time.monotonic() - last_read())
        if left <= 0:
            log.warning("replication stream idle for %.1fs: closing", timeout)
            writer.close()
            return
        await asyncio.sleep(min(left, timeout / 2) + 0.01)


class _Conn:
    """One follower's connection: the sans-IO state machine plus its socket and tasks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, machine: MasterConnection) -> None:
        self.reader = reader
        self.writer = writer
        self.machine = machine
        self.last_read = time.monotonic()
        self.task: asyncio.Task | None = None
        self.wake = Waker()

    @property
    def broker_id(self) -> int:
        return self.machine.broker_id

    @property
    def ack(self) -> int:
        return self.machine.ack


class HAMaster:
    """Serves one master epoch. `start()` listens; `stop()` closes every connection."""

    def __init__(self, store: ReplicaStore, epochs: EpochFile, master_id: int, master_epoch: int, sss: SyncStateSet,
                 settings: MasterSettings, listen: str,
                 alter: Callable[[frozenset[int], int], Any] | None = None,
                 writable: Callable[[], ReplicationError | None] | None = None,
                 replica_count: Callable[[], int] | None = None, secret: bytes | None = None,
                 replicas: Callable[[], Mapping[int, bool] | None] | None = None) -> None:
        self.store = store
        self.epochs = epochs
        self.master_id = master_id
        self.master_epoch = master_epoch
        self.sss = sss
        self.settings = settings
        self.listen = listen
        self.alter = alter            # async (members, sss_epoch) -> (ok, members, sss_epoch)
        self.writable = writable      # None if writes may be acknowledged, else the refusal
        self._known_replicas = replica_count  # non-learner replicas the controller knows of
        self.secret = secret          # the cluster secret: HELLOs must be signed with it
        self._replica_view = replicas  # controller's view: replica id -> learner (None: not known)
        self._replay = ReplayGuard()
        self._open: set[_Conn] = set()   # every accepted connection, handshaking or streaming
        self.server: asyncio.base_events.Server | None = None
        self.conns: dict[int, _Conn] = {}
        self._waiters: list[tuple[int, int, asyncio.Future]] = []  # (end, seq, future) sorted
        self._seq = 0
        self._tasks: list[asyncio.Task] = []
        self._replica_ids: set[int] = set(sss.members)
        self._seen: dict[int, tuple[int, float]] = {}   # replica (learners too) -> (offset it holds, when seen)
        self.stopped = False
        self.stats = {"frames": 0, "bytes": 0, "acks": 0, "refused": 0}

    # ---- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> int:
        host, port = split_addr(self.listen)
        tls = {"ssl": self.settings.ssl, "ssl_handshake_timeout": self.settings.idle_timeout_s} if self.settings.ssl else {}
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True, **tls)
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        self._update_confirm()
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.stopped = True
        for t in self._tasks:
            t.cancel()
        if self.server is not None:
            self.server.close()
        for c in list(self._open | set(self.conns.values())):
            c.writer.close()
            if c.task is not None:
                c.task.cancel()
        self._fail_waiters(ReplicationError("NOT_MASTER", "this broker stopped being master"))
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    # ---- the send path ----------------------------------------------------------------------------

    def notify_data(self) -> None:
        """New data was appended: wake every sender."""
        for c in self.conns.values():
            c.wake.set()

    def _holding(self, broker_id: int) -> int:
        return self.sss.holding(broker_id, store_max(self.store))

    def replica_count(self) -> int:
        seen = len({i for i in self._replica_ids if not self._is_learner(i)} | {self.master_id})
        known = self._known_replicas() if self._known_replicas is not None else 0
        return max(seen, known)

    def _is_learner(self, broker_id: int) -> bool:
        r = self.sss.replicas.get(broker_id)
        return bool(r and r.learner)

    def verdict(self, end_offset: int) -> Verdict:
        return evaluate(self.settings.policy, end_offset, self.sss.ack_set(), self._holding, self.replica_count())

    def _upto(self) -> int | None:
        """The highest end offset a send may have to be acknowledged now (None: set too small)."""
        return acknowledged_upto(self.settings.policy, self.sss.ack_set(), self._holding, self.replica_count())

    async def wait_replicated(self, end_offset: int) -> None:
        self.notify_data()
        upto = self._upto()
        if upto is None:
            raise ReplicationError("IN_SYNC_REPLICAS_NOT_ENOUGH",
                                   f"sync-state-set {sorted(self.sss.ack_set())} is smaller than the "
                                   f"{self.settings.policy.required(self.replica_count())} replicas required")
        if end_offset <= upto:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._seq += 1
        entry = (end_offset, self._seq, fut)
        bisect.insort(self._waiters, entry, key=lambda w: (w[0], w[1]))
        timer = loop.call_later(self.settings.ack_timeout_s, self._expire, entry)
        try:
            await fut
        finally:
            timer.cancel()

    def _expire(self, entry: tuple[int, int, asyncio.Future]) -> None:
        """A waiter's deadline passed: fail it with the reason as it stands now."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(entry)
        end, _, fut = entry
        if fut.done():
            return
        upto = self._upto()
        refusal = self.writable() if self.writable is not None else None
        if refusal is None and upto is not None and end <= upto:
            fut.set_result(None)
        elif refusal is not None:
            fut.set_exception(refusal)
        elif upto is None:
            fut.set_exception(ReplicationError("IN_SYNC_REPLICAS_NOT_ENOUGH",
                                               f"sync-state-set shrank to {sorted(self.sss.ack_set())}"))
        else:
            fut.set_exception(ReplicationError(
                "REPLICATION_TIMEOUT", f"offset {end} not held by every in-sync replica "
                f"{sorted(self.sss.ack_set())} within {self.settings.ack_timeout_s}s"))

    def _release_waiters(self) -> None:
        if not self._waiters:
            return
        refusal = self.writable() if self.writable is not None else None
        if refusal is not None:
            return  # fenced: nobody is acknowledged; they fail at their deadline (or on stop)
        upto = self._upto()
        if upto is None:
            return
        n = bisect.bisect_right(self._waiters, upto, key=lambda w: w[0])
        for _, _, fut in self._waiters[:n]:
            if not fut.done():
                fut.set_result(None)
        if n:
            del self._waiters[:n]

    def _fail_waiters(self, exc: ReplicationError) -> None:
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved
        self._waiters.clear()

    def _update_confirm(self) -> None:
        c = self.sss.confirm_offset(store_max(self.store))
        if c > store_confirm(self.store):
            self.store.set_confirm_offset(c)

    # ---- connections ------------------------------------------------------------------------------

    def _log_view(self) -> MasterLog:
        mx = store_max(self.store)
        return MasterLog(mx, store_min(self.store), self.sss.confirm_offset(mx), tuple(self.epochs.entries))

    def _policy(self) -> HelloPolicy:
        view = self._replica_view() if self._replica_view is not None else None
        return HelloPolicy(self.master_id, self.secret, view, self._replay)

    def _admission_refusal(self) -> hp.Refuse | None:
        """Connection limits, checked when a connection is accepted (before reading anything)."""
        s = self.settings
        if len(self._open) >= s.max_connections:
            return hp.Refuse("BROKER_BUSY", f"{len(self._open)} replication connections open "
                             f"(ha_max_connections {s.max_connections})")
        pending = sum(1 for c in self._open if c.machine.state is ConnState.AWAIT_HELLO)
        if pending >= s.max_handshakes:
            return hp.Refuse("BROKER_BUSY", f"{pending} replication handshakes in progress "
                             f"(ha_max_handshakes {s.max_handshakes})")
        return None

    async def _refuse(self, writer: asyncio.StreamWriter, frame: hp.Refuse, peer: object) -> None:
        self.stats["refused"] += 1
        log.warning("replication connection refused %s", kv(peer=peer, code=frame.code, why=frame.message[:200]))
        with contextlib.suppress(Exception):
            writer.write(hp.encode(frame))
            await asyncio.wait_for(writer.drain(), 1.0)
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        busy = self._admission_refusal()
        if busy is not None:
            await self._refuse(writer, busy, peer)
            return
        c = _Conn(reader, writer, MasterConnection(self.master_id, self.master_epoch, self.settings.frame_bytes,
                                                   self.settings.heartbeat_s, self._policy()))
        c.task = asyncio.current_task()
        self._open.add(c)
        sender: asyncio.Task | None = None
        watchdog: asyncio.Task | None = None
        try:
            deadline = time.monotonic() + self.settings.handshake_timeout_s
            while c.machine.state is not ConnState.CLOSED:
                if c.machine.state is ConnState.STREAMING:
                    timeout = None
                else:
                    timeout = max(0.01, deadline - time.monotonic())
                data = await (asyncio.wait_for(reader.read(65536), timeout) if timeout else reader.read(65536))
                if not data:
                    if c.machine.state is not ConnState.STREAMING:
                        raise ConnectionError("peer closed during the handshake")
                    c.machine.decoder.finish()
                    break
                c.last_read = time.monotonic()
                for a in c.machine.receive_data(data, self._log_view(), serving=not self.stopped,
                                                now_ms=int(time.time() * 1000)):
                    if isinstance(a, Send):
                        if isinstance(a.frame, hp.Refuse):
                            self.stats["refused"] += 1
                            log.warning("replica refused %s", kv(replica=c.broker_id, peer=peer, code=a.frame.code,
                                                                 why=a.frame.message[:200]))
                        writer.write(hp.encode(a.frame))
                        await writer.drain()
                    elif isinstance(a, HelloEvent):
                        old = self.conns.get(a.broker_id)
                        if old is not None:
                            silent = time.monotonic() - old.last_read
                            if not may_replace(silent, self.settings.replace_after_s):
                                c.machine.close()
                                await self._refuse(writer, hp.Refuse(
                                    "BROKER_BUSY", f"replica {a.broker_id} is already connected and live "
                                    f"(heard {silent:.1f}s ago); retry once that connection is gone"), peer)
                                return
                            log.warning("replica reconnected; closing its silent connection %s",
                                        kv(replica=a.broker_id, silent_s=round(silent, 1)))
                            old.writer.close()
                        self.conns[a.broker_id] = c
                        self._seen[a.broker_id] = (c.ack, time.monotonic())
                        if not a.learner:
                            self._replica_ids.add(a.broker_id)
                        deadline = time.monotonic() + self.settings.handshake_timeout_s
                    elif isinstance(a, Acked):
                        if a.first:
                            self.sss.connected(c.broker_id, c.machine.learner, time.monotonic())
                        self._on_ack(c, a.offset)
                        if a.first:
                            log.info("replica connected %s", kv(replica=c.broker_id, learner=c.machine.learner,
                                                                start=c.machine.pos, epoch=self.master_epoch,
                                                                peer=peer))
                            sender = asyncio.create_task(self._send_loop(c))
                            watchdog = asyncio.create_task(
                                idle_watchdog(lambda: c.last_read, self.settings.idle_timeout_s, writer))
        except ReplicationRefused as e:
            log.warning("replica refused %s", kv(replica=c.broker_id, error=e))
        except (hp.FrameError, ConnectionError, TimeoutError, asyncio.IncompleteReadError, OSError) as e:
            log.warning("replica connection ended %s", kv(replica=c.broker_id, peer=peer,
                                                          error=f"{type(e).__name__}: {str(e)[:200]}"))
            with contextlib.suppress(Exception):
                if isinstance(e, hp.FrameError):
                    writer.write(hp.encode(hp.Refuse("BAD_REQUEST", str(e)[:1000])))
        except asyncio.CancelledError:
            pass
        finally:
            self._open.discard(c)
            c.machine.close()
            if sender is not None:
                sender.cancel()
            if watchdog is not None:
                watchdog.cancel()
            if c.broker_id >= 0 and self.conns.get(c.broker_id) is c:
                del self.conns[c.broker_id]
                self.sss.disconnected(c.broker_id)
                log.info("replica disconnected %s", kv(replica=c.broker_id, epoch=self.master_epoch))
            writer.close()

    def retention_floor(self, now: float, keep_s: float) -> int | None:
        """The lowest offset a replica seen within `keep_s` still has to read (None: no such
        replica): expiry keeps what a lagging or briefly cut follower or learner needs."""
        held = [off for off, seen in self._seen.values() if now - seen <= keep_s and off >= 0]
        return min(held) if held else None

    def _on_ack(self, c: _Conn, offset: int) -> None:
        self._seen[c.broker_id] = (offset, time.monotonic())
        self.stats["acks"] += 1
        self.sss.on_ack(c.broker_id, offset, store_max(self.store), time.monotonic())
        self._update_confirm()
        self._release_waiters()

    async def _send_loop(self, c: _Conn) -> None:
        m = c.machine
        try:
            while True:
                c.wake.clear()
                await asyncio.sleep(0)  # let the sends already queued on the loop append first: fewer, larger frames
                view = self._log_view()
                chunk = m.next_chunk(view)
                if chunk is not None:
                    body = self.store.read_raw(chunk.start, chunk.size)
                    if not body:  # one record larger than a frame: send it alone
                        body = self.store.read_raw(chunk.start, min(chunk.limit - chunk.start, hp.MAX_PAYLOAD - 64))
                    if not body:
                        await asyncio.sleep(0.01)
                        continue
                    head, payload = hp.encode_data_parts(m.data_frame(chunk, body, view, time.monotonic()))
                    c.writer.write(head + payload)  # one send syscall: each one may wait for the GIL
                    await c.writer.drain()
                    self.stats["frames"] += 1
                    self.stats["bytes"] += len(body)
                    continue
                hb = m.heartbeat(view, time.monotonic())
                if hb is not None:
                    c.writer.write(hp.encode(hb))
                    await c.writer.drain()
                await c.wake.wait(min(m.heartbeat_s, 0.2))
        except (ConnectionError, OSError) as e:
            log.info("replica sender ended %s", kv(replica=c.broker_id, error=e))
            c.writer.close()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - our own failure: say so to the follower and log it
            log.exception("replica sender failed %s", kv(replica=c.broker_id, pos=m.pos))
            with contextlib.suppress(Exception):
                c.writer.write(hp.encode(hp.Refuse("INTERNAL", f"master cannot stream from {m.pos}: {e}")))
            c.writer.close()

    async def _housekeeping(self) -> None:
        """Caught-up ticks, confirm offset, sync-state-set shrink/expand through the controller."""
        while True:
            await asyncio.sleep(0.2)
            try:
                mx = store_max(self.store)
                now = time.monotonic()
                self.sss.tick(mx, now)
                self._update_confirm()
                self._release_waiters()
                if self.alter is not None:
                    p = self.sss.propose(mx, now)
                    if p is not None:
                        log.info("sync-state-set change proposed %s", kv(
                            members=sorted(p.members), removed=sorted(p.removed), added=sorted(p.added),
                            epoch=self.master_epoch, sss_epoch=self.sss.sss_epoch))
                        try:
                            ok, members, sss_epoch = await self.alter(p.members, self.sss.sss_epoch)
                        except Exception as e:  # noqa: BLE001 - any failure keeps the union
                            log.warning("sync-state-set change failed %s", kv(error=e))
                            ok, members, sss_epoch = False, None, None
                        if ok:
                            self.sss.alter_done(frozenset(members), sss_epoch)
                            log.info("sync-state-set now %s", kv(members=sorted(members), sss_epoch=sss_epoch,
                                                                  epoch=self.master_epoch))
                        else:
                            self.sss.alter_failed()
                            if members is not None and sss_epoch is not None:
                                self.sss.adopt(frozenset(members), sss_epoch)
                        self._update_confirm()
                        self._release_waiters()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the loop alive, say what broke
                log.exception("HA master housekeeping failed")
