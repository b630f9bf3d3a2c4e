"""The proxy's local mode: an embedded broker store in the proxy process (development and tests).

Owns: opening the `MessageStore` under `data_dir` with pop consumption (`PopService`), topics
(auto-created when asked), consumer-group settings (FIFO, max attempts), sends, and waking
long-polling receives when new messages become visible. Blocking store calls run in threads.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import zlib
from dataclasses import dataclass

from orbitmq.broker import names
from orbitmq.broker.pop_core import PopError
from orbitmq.broker.pop_poll import PopPoller
from orbitmq.broker.pop_service import PROP_DELIVER_MS, PROP_MSG_GROUP, PopService, Received
from orbitmq.broker.store import GetStatus, MessageStore, PutResult, StoreConfig
from orbitmq.broker.store.record import Message as Record
from orbitmq.broker.timer_service import TIMER_TOPIC, TimerService, divert
from orbitmq.broker.tx_core import TxError
from orbitmq.broker.tx_service import TxService
from orbitmq.proxy.config import ProxyConfig, parse_group_spec
from orbitmq.proxy.convert import PROP_TX_CHECK_S
from orbitmq.proxy.errors import ProxyError, from_broker

log = logging.getLogger("orbitmq.proxy.local")


@dataclass
class GroupSettings:
    fifo: bool
    max_attempts: int


class LocalBackend:
    """`await open()`, then the operations; `await close()` at the end."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.store: MessageStore | None = None
        self.pops: PopService | None = None
        self.poller: PopPoller | None = None
        self.tx: TxService | None = None
        self.timer: TimerService | None = None
        self._rr = itertools.count()

    # ---- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        cfg = self.config
        os.makedirs(cfg.data_dir, exist_ok=True)
        self.store = MessageStore(StoreConfig(store_dir=os.path.join(cfg.data_dir, "store"),
                                              flush_mode=cfg.flush_mode, store_host=cfg.advertise or cfg.listen))
        self.pops = PopService(self.store, cfg.broker_name)
        self.tx = TxService(self.store)
        self.timer = TimerService(self.store)
        await asyncio.to_thread(self.store.open)
        n = await asyncio.to_thread(self.pops.load)
        await asyncio.to_thread(self.tx.load)
        scheduled = await asyncio.to_thread(self.timer.load)
        self.timer.start()
        self.poller = PopPoller(self.pops)
        for spec in cfg.groups:
            name, fifo, attempts = parse_group_spec(spec)
            await asyncio.to_thread(self.store.put_subscription_group, name, {
                "consume_enable": True, "broadcast_enable": False,
                "retry_max_times": (attempts or cfg.max_attempts) - 1, "attributes": {"fifo": str(fifo).lower()}})
        log.info("local broker open dir=%s pop-queues=%d scheduled=%d", cfg.data_dir, n, scheduled)

    async def close(self) -> None:
        if self.timer is not None:
            await asyncio.to_thread(self.timer.stop)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None

    # ---- topics and groups ------------------------------------------------------------------------

    async def queues(self, topic: str, create: bool = False) -> list[tuple[str, int]]:
        """(broker name, queue id) of every queue of `topic` (auto-created if allowed)."""
        cfg = self.store.get_topic_config(topic)
        if cfg is None:
            if not (create and self.config.auto_create_topics):
                raise ProxyError("TOPIC_NOT_FOUND", f"topic {topic!r} does not exist (the proxy was started "
                                 "without --auto-create-topics)")
            n = self.config.default_queues
            cfg = {"read_queues": n, "write_queues": n, "perm": 6, "order": False, "attributes": {}}
            await asyncio.to_thread(self.store.put_topic_config, topic, cfg)
            log.info("auto-created topic %s with %d queues", topic, n)
        n = max(int(cfg.get("read_queues", 1)), int(cfg.get("write_queues", 1)), 1)
        return [(self.config.broker_name, q) for q in range(n)]

    async def group_settings(self, group: str) -> GroupSettings:
        fifo, attempts = self.pops.group_settings(group, self.config.max_attempts)
        return GroupSettings(fifo, attempts)

    # ---- produce ----------------------------------------------------------------------------------

    async def send(self, topic: str, records: list[Record]) -> list[PutResult]:
        """Store records (queue picked here: message group hash for FIFO, else round robin)."""
        n = len(await self.queues(topic, create=True))
        now = int(time.time() * 1000)
        for r in records:
            self._pick(r, n)
            if int(r.properties.get(PROP_DELIVER_MS) or 0) > now:
                if self.store.get_topic_config(TIMER_TOPIC) is None:
                    await asyncio.to_thread(self.timer.ensure_topic)
                divert(r)  # scheduled: the timer stores it in its topic when due
        try:
            # an append to the mapped log, on the loop like the broker's own SendMessage (no executor hop)
            results = self.store.put_batch(records)
        except names.NameError_ as e:
            raise from_broker(e.code, str(e)) from None
        if self.config.flush_mode == "sync":  # group commit: answered once on disk
            await self.store.flushed(max(r.end_offset for r in results))
        return results

    # ---- consume ----------------------------------------------------------------------------------

    async def receive(self, group: str, topic: str, broker: str, start_qid: int, batch: int, invisible_ms: int,
                      tags: set[str] | None, poll_ms: float) -> tuple[list[Received], int]:
        n = len(await self.queues(topic))
        order = [(start_qid + i) % n for i in range(n)]
        gs = await self.group_settings(group)
        return await self.poller.receive(group, topic, order, batch, invisible_ms, gs.max_attempts, gs.fifo, tags,
                                         poll_ms)

    async def ack_many(self, group: str, topic: str, handles: list[str]) -> list[ProxyError | None]:
        errs = await asyncio.to_thread(self.pops.ack_many, group, topic, handles)
        return [None if e is None else ProxyError(e.code, str(e)) for e in errs]

    async def change_invisible(self, group: str, topic: str, handle: str, invisible_ms: int, now: int) -> str:
        return await self._pop_call(self.pops.change_invisible, group, topic, handle, invisible_ms, now)

    async def forward_to_dead_letter(self, group: str, topic: str, handle: str, attempts: int) -> None:
        await self._pop_call(self.pops.forward_to_dead_letter, group, topic, handle, attempts)

    async def _pop_call(self, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except PopError as e:
            raise ProxyError(e.code, str(e)) from None

    # ---- pull and offsets (PullConsumer) -------------------------------------------------------------

    async def pull(self, group: str, topic: str, broker: str, qid: int, offset: int, batch: int,
                   tags: set[str] | None, poll_ms: float) -> tuple[str, list[Record], int]:
        """(status Code name, messages, next offset) of one queue from `offset`, long polling for new ones."""
        n = len(await self.queues(topic))
        if not 0 <= qid < n:
            raise ProxyError("BAD_REQUEST", f"queue {qid} out of range: topic {topic!r} has {n} queues")
        deadline = time.monotonic() + max(0.0, poll_ms) / 1000
        while True:
            got = await asyncio.to_thread(self.store.get_messages, topic, qid, offset, batch, 4 << 20, tags)
            st = got.status
            if st == GetStatus.FOUND and got.messages:
                return "OK", got.messages, got.next_offset
            if st in (GetStatus.OFFSET_MOVED, GetStatus.OFFSET_TOO_BIG):
                return "ILLEGAL_OFFSET", [], got.next_offset
            if st == GetStatus.FOUND:  # only messages the filter dropped
                offset = got.next_offset
            left = deadline - time.monotonic()
            if left <= 0:
                return "MESSAGE_NOT_FOUND", [], got.next_offset if st == GetStatus.FOUND else max(offset, got.next_offset)
            await self.poller.wait_new(min(left, 1.0))

    async def update_offset(self, group: str, topic: str, broker: str, qid: int, offset: int) -> None:
        await self.queues(topic)
        await asyncio.to_thread(self.store.commit_offset, group, topic, qid, offset)

    async def get_offset(self, group: str, topic: str, broker: str, qid: int) -> int:
        await self.queues(topic)
        v = self.store.query_offset(group, topic, qid)
        if v is None:
            raise ProxyError("OFFSET_NOT_FOUND", f"group {group!r} has no offset for queue {qid} of {topic!r}")
        return v

    async def query_offset(self, topic: str, broker: str, qid: int, end: bool) -> int:
        await self.queues(topic)
        return self.store.max_offset(topic, qid) if end else self.store.min_offset(topic, qid)

    # ---- transactions ---------------------------------------------------------------------------

    def _pick(self, r: Record, n: int) -> None:
        group = r.properties.get(PROP_MSG_GROUP, "")
        r.queue_id = zlib.crc32(group.encode()) % n if group else next(self._rr) % n

    async def send_half(self, topic: str, record: Record) -> PutResult:
        await self.queues(topic, create=True)
        after_s = float(record.properties.get(PROP_TX_CHECK_S) or self.config.tx_check_after_s)
        now = int(time.time() * 1000)
        try:
            return await asyncio.to_thread(self.tx.put_half, record, now, int(after_s * 1000))
        except names.NameError_ as e:
            raise from_broker(e.code, str(e)) from None

    async def end_transaction(self, topic: str, transaction_id: str, commit: bool) -> None:
        n = len(await self.queues(topic))

        def put_real(m: Record) -> None:
            self._pick(m, n)
            self.store.put(m)

        try:
            await asyncio.to_thread(self.tx.end, transaction_id, topic, commit, put_real)
        except TxError as e:
            raise ProxyError(e.code, str(e)) from None

    async def due_transactions(self, now: int) -> list[tuple[str, Record]]:
        return await asyncio.to_thread(self.tx.due, now, int(self.config.tx_check_after_s * 1000),
                                       self.config.tx_max_checks)
