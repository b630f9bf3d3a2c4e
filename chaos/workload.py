"""The chaos workload: producer threads doing sync sends with unique ids (some with an ordering key
sent to one queue), consumer threads reading concurrently, and a final read-back; everything they
see is recorded as `checker.Send` / `checker.Delivery` (wall-clock times).

Bounded: every loop stops on `stop()`, on `max_sends`, and at a hard deadline. Ids are
`<producer>-<n>` and travel as the message's first key (and body), so a delivery is matched to
its send whatever msg_id the broker reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from orbitmq.chaos.checker import Delivery, Send

log = logging.getLogger("orbitmq.chaos.workload")


@dataclass
class WorkloadConfig:
    namesrv: list[str]
    topic: str = "ChaosTopic"
    producers: int = 3
    keyed_producers: int = 1          # of `producers`, how many send with ordering keys (one queue per key)
    keys_per_producer: int = 4
    rate: float = 120.0               # sends per second, all producers together
    consumers: int = 2
    group: str = "chaos-readers"
    send_timeout_s: float = 3.0
    max_sends: int = 2_000_000
    max_seconds: float = 7200.0       # hard bound on every thread


def message_id(m) -> str:
    """The workload id of a received message (first key, else the body)."""
    if m.keys:
        return str(m.keys[0])
    return bytes(m.body).decode(errors="replace")


class Workload:
    """Start with `start()`; `stop_producers()`, `drain()`, `stop_consumers()`, then `read_back()`."""

    def __init__(self, cfg: WorkloadConfig, *, clock: Callable[[], float] = time.time) -> None:
        if cfg.producers < 1 or cfg.rate <= 0 or cfg.consumers < 0 or not 0 <= cfg.keyed_producers <= cfg.producers:
            raise ValueError("need producers >= 1, rate > 0, consumers >= 0, 0 <= keyed_producers <= producers")
        self.cfg = cfg
        self.clock = clock
        self.sends: list[Send] = []
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._stop_send = threading.Event()
        self._stop_consume = threading.Event()
        self._threads: list[threading.Thread] = []
        self._consumer_threads: list[threading.Thread] = []
        self._deadline = time.monotonic() + cfg.max_seconds
        self.errors: dict[str, int] = {}

    # ---- counters (thread-safe snapshots) -----------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """(sends, acked, deliveries) so far."""
        with self._lock:
            return len(self.sends), sum(1 for s in self.sends if s.ok), len(self.deliveries)

    def acked_ids(self) -> set[str]:
        with self._lock:
            return {s.id for s in self.sends if s.ok}

    def delivered_ids(self) -> set[str]:
        with self._lock:
            return {d.id for d in self.deliveries}

    def first_ack_after(self, t: float) -> float | None:
        """When the first send started at or after `t` was acknowledged (None: not yet)."""
        with self._lock:
            later = [s.end for s in self.sends if s.ok and s.start >= t]
        return min(later) if later else None

    # ---- producers ------------------------------------------------------------------------------------

    def start(self) -> None:
        for i in range(self.cfg.consumers):
            t = threading.Thread(target=self._consume, args=(f"c{i + 1}",), name=f"chaos-consumer-{i + 1}", daemon=True)
            t.start()
            self._consumer_threads.append(t)
        for i in range(self.cfg.producers):
            keyed = i < self.cfg.keyed_producers
            t = threading.Thread(target=self._produce, args=(f"p{i + 1}", keyed), name=f"chaos-producer-{i + 1}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _produce(self, name: str, keyed: bool) -> None:
        from orbitmq.client import Message, OrbitError, Producer, select_by_hash

        per_rate = self.cfg.rate / self.cfg.producers
        seqs: dict[str, int] = {}
        n = 0
        try:
            producer = Producer(self.cfg.namesrv, send_timeout_s=self.cfg.send_timeout_s, retries=2, route_refresh_s=5.0)
        except Exception:  # noqa: BLE001
            log.exception("producer %s could not start", name)
            return
        with producer:
            next_at = time.monotonic()
            while not self._stop_send.is_set() and time.monotonic() < self._deadline:
                with self._lock:
                    if len(self.sends) >= self.cfg.max_sends:
                        break
                n += 1
                wid = f"{name}-{n:07d}"
                key, seq = "", 0
                if keyed:
                    key = f"{name}-k{n % self.cfg.keys_per_producer}"
                    seq = seqs[key] = seqs.get(key, -1) + 1
                msg = Message(self.cfg.topic, wid.encode(), keys=[wid])
                start = self.clock()
                try:
                    if key:
                        r = producer.send(msg, selector=select_by_hash, arg=key)
                    else:
                        r = producer.send(msg)
                    rec = Send(wid, start, self.clock(), True, key, seq, r.queue.broker_set, r.queue.queue_id,
                               r.queue_offset, r.epoch, r.broker_addr)
                except OrbitError as e:
                    rec = Send(wid, start, self.clock(), False, key, seq, error=e.code)
                except Exception as e:  # noqa: BLE001 - record, keep going
                    rec = Send(wid, start, self.clock(), False, key, seq, error=type(e).__name__)
                with self._lock:
                    self.sends.append(rec)
                    if not rec.ok:
                        self.errors[rec.error] = self.errors.get(rec.error, 0) + 1
                if not rec.ok:
                    self._stop_send.wait(0.05)
                next_at += 1.0 / per_rate
                now = time.monotonic()
                if next_at > now:
                    self._stop_send.wait(next_at - now)
                else:
                    next_at = max(next_at, now - 1.0)

    def stop_producers(self, timeout: float = 30.0) -> None:
        self._stop_send.set()
        for t in self._threads:
            t.join(timeout)

    # ---- consumers -------------------------------------------------------------------------------------

    def _record(self, msgs, consumer: str) -> None:
        now = self.clock()
        recs = [Delivery(message_id(m), m.broker_set, m.queue_id, m.queue_offset, now, consumer) for m in msgs]
        with self._lock:
            self.deliveries.extend(recs)

    def _consume(self, name: str) -> None:
        from orbitmq.client import PullConsumer

        consumer = None
        while not self._stop_consume.is_set() and time.monotonic() < self._deadline:
            try:
                if consumer is None:
                    consumer = PullConsumer(self.cfg.group, self.cfg.namesrv, auto_commit=True,
                                            auto_commit_interval_s=1.0, instance_name=name, rebalance_interval_s=2.0)
                    consumer.subscribe(self.cfg.topic)
                    consumer.start()
                msgs = consumer.poll(timeout=0.5)
                if msgs:
                    self._record(msgs, name)
            except Exception as e:  # noqa: BLE001 - a fault may break the start; try again
                log.debug("consumer %s: %s", name, e)
                if consumer is not None and not consumer._started:
                    consumer = None
                self._stop_consume.wait(0.5)
        if consumer is not None:
            try:
                consumer.close()
            except Exception:  # noqa: BLE001
                log.debug("consumer %s close failed", name, exc_info=True)

    def drain(self, timeout: float) -> bool:
        """Wait until the consumers have seen every acknowledged id (True), or `timeout` passes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.acked_ids() - self.delivered_ids():
                return True
            time.sleep(0.25)
        return False

    def stop_consumers(self, timeout: float = 30.0) -> None:
        self._stop_consume.set()
        for t in self._consumer_threads:
            t.join(timeout)


def _floors(consumer, topic: str) -> dict[tuple[str, int], int]:
    """Each readable queue's minimum offset now (queues that do not answer are left out)."""
    from orbitmq.protos import broker_pb2

    out: dict[tuple[str, int], int] = {}
    route = consumer.transport.route(topic)
    for mq in route.read_queues:
        addr = route.read_address(mq.broker_set)
        try:
            rng = consumer.transport.call_broker(addr, "GetOffsetRange", broker_pb2.GetOffsetRangeRequest(
                topic=topic, queue_id=mq.queue_id))
            out[(mq.broker_set, mq.queue_id)] = int(rng.min_offset)
        except Exception:  # noqa: BLE001 - no floor known: nothing is excused as expired there
            log.warning("no offset range for %s", mq)
    return out


def read_back(namesrv: list[str], topic: str, expected: set[str] | dict[str, tuple[str, int, int]],
              timeout: float, clock: Callable[[], float] = time.time
              ) -> tuple[list[Delivery], dict[tuple[str, int], int]]:
    """Read the whole topic from the first offset with a new group until every expected id is seen
    (or `timeout`); returns the deliveries and each queue's minimum offset at the end. With
    `expected` as id -> (broker set, queue, offset), ids that expiry deleted meanwhile (below their
    queue's minimum offset) are not waited for."""
    from orbitmq.client import PullConsumer

    out: list[Delivery] = []
    consumer = PullConsumer(f"chaos-check-{int(time.time() * 1000)}", namesrv, auto_commit=False)
    consumer.subscribe(topic)
    positions = expected if isinstance(expected, dict) else {}
    try:
        deadline = time.monotonic() + timeout
        missing = set(expected)
        quiet_until = None
        next_floor = 0.0
        while time.monotonic() < deadline:
            if positions and time.monotonic() >= next_floor:
                next_floor = time.monotonic() + 3.0
                floors = _floors(consumer, topic)
                missing = {i for i in missing if positions[i][2] >= floors.get(positions[i][:2], 0)}
            msgs = consumer.poll(timeout=1.0)
            now = clock()
            for m in msgs:
                mid = message_id(m)
                out.append(Delivery(mid, m.broker_set, m.queue_id, m.queue_offset, now, "read-back"))
                missing.discard(mid)
            if not missing:
                # a little longer, to see duplicates stored after the last expected id
                quiet_until = quiet_until or time.monotonic() + 2.0
                if time.monotonic() >= quiet_until:
                    break
        floors = _floors(consumer, topic)
    finally:
        consumer.close()
    return out, floors
