"""`PushConsumer`: pulls in the background and calls a listener from a thread pool.

Owns: the listener contract (return `ConsumeStatus.SUCCESS`/None, or `RECONSUME_LATER` / raise to
have the messages redelivered locally after `reconsume_delay_s`, up to `max_reconsume` times,
after which they are logged and skipped), acknowledgement into the offset tracker, and orderly
shutdown (stop pulling, finish what is being consumed, commit, leave the group).

At most `threads` listener calls run at once (one slot each). A pull's reply read by a framed
connection's reader thread is consumed on that thread when a slot is free (client/remoting.py
`run_after_read`: the reading role passes to another thread first, or, for a listener whose recent
calls averaged under QUICK_LISTENER_S, is left free while it runs, nobody woken), so a message
reaches the listener with no thread hop; otherwise the consume pool runs it.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orbitmq.client import errors
from orbitmq.client.consumer_base import ConsumerBase, QueueState, offsets_of
from orbitmq.client.remoting import run_after_read, work_after_read

log = logging.getLogger("orbitmq.client.consumer")

QUICK_LISTENER_S = 0.0005   # a listener this quick (recent average) runs before a caught-up queue's next pull


class ConsumeStatus(enum.Enum):
    SUCCESS = "SUCCESS"
    RECONSUME_LATER = "RECONSUME_LATER"


Listener = Callable[[list[Any]], "ConsumeStatus | None"]


class PushConsumer(ConsumerBase):
    """Clustering (queues divided among the group's members) or broadcasting (every member gets
    every message; offsets in a local file). See `ConsumerBase` for the shared settings."""

    def __init__(self, group: str, namesrv: str | list[str], *, threads: int = 4, consume_batch: int = 1,
                 max_reconsume: int = 16, reconsume_delay_s: float = 1.0, **kw: Any) -> None:
        super().__init__(group, namesrv, **kw)
        if threads < 1 or consume_batch < 1 or max_reconsume < 0 or reconsume_delay_s < 0:
            raise ValueError("need threads >= 1, consume_batch >= 1, max_reconsume >= 0, reconsume_delay_s >= 0")
        self.threads = threads
        self.consume_batch = consume_batch
        self.max_reconsume = max_reconsume
        self.reconsume_delay_s = reconsume_delay_s
        self._listener: Listener | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(threads)   # listener calls running at once
        self._later: list[tuple[float, int, QueueState, list[Any]]] = []
        self._later_cond = threading.Condition()
        self._seq = itertools.count()
        self._listener_s = 0.0     # recent average time of a listener call (a hint; updated without a lock)

    def register_listener(self, listener: Listener) -> None:
        """listener(messages) -> ConsumeStatus | None; called from the consume thread pool."""
        if not callable(listener):
            raise TypeError("listener must be callable")
        self._listener = listener

    def start(self) -> None:
        if self._listener is None:
            raise errors.BadRequestError("register_listener() before start()")
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=f"orbitmq-consume-{self.group}")
        t = threading.Thread(target=self._later_loop, name="orbitmq-reconsume", daemon=True)
        t.start()
        self._threads.append(t)
        super().start()

    def _deliver(self, qs: QueueState, msgs: Sequence[Any]) -> None:
        n = self.consume_batch
        quick = self._listener_s <= QUICK_LISTENER_S   # (no other reader thread is woken for it)
        msgs = list(msgs)      # (a pull's messages are made here)
        for i in range(0, len(msgs), n):
            chunk = msgs[i:i + n]
            if self._slots.acquire(blocking=False):
                if run_after_read(lambda qs=qs, chunk=chunk: self._consume_in_slot(qs, chunk), quick):
                    continue
                self._slots.release()
            self._pool.submit(self._consume_pooled, qs, chunk)

    def _chain_later(self, pull: Any) -> bool:
        """A caught-up queue (the reply reached the queue's end) whose messages this reader thread
        is about to hand to a quick listener: the listener runs first and the next pull right
        after it, instead of the pull's send delaying the listener. The next pull then leaves a
        listener call later, which costs nothing while nothing new has arrived."""
        if not (pull.got and pull.caught_up) or self._listener_s > QUICK_LISTENER_S or not work_after_read():
            return False
        return run_after_read(pull.chain_on, quick=True)

    def _consume_pooled(self, qs: QueueState, msgs: list[Any]) -> None:
        self._slots.acquire()
        self._consume_in_slot(qs, msgs)

    def _consume_in_slot(self, qs: QueueState, msgs: list[Any]) -> None:
        try:
            self._consume(qs, msgs)
        finally:
            self._slots.release()

    def _consume(self, qs: QueueState, msgs: list[Any]) -> None:
        if qs.dropped:
            return   # the queue moved to another member; it resumes from the committed offset
        t0 = time.perf_counter()
        try:
            status = self._listener(msgs)
        except Exception:  # noqa: BLE001 - a failing listener means "later"
            log.exception("listener failed on %d message(s) of %s", len(msgs), qs.mq.key())
            status = ConsumeStatus.RECONSUME_LATER
        self._listener_s = 0.8 * self._listener_s + 0.2 * (time.perf_counter() - t0)
        if status is None or status is ConsumeStatus.SUCCESS:
            qs.ack(offsets_of(msgs))
            return
        done: list[int] = []
        again: list[Any] = []
        for m in msgs:
            if m.reconsume_times >= self.max_reconsume:
                log.warning("message %s of %s failed %d times: skipped", m.msg_id, qs.mq.key(), m.reconsume_times + 1)
                done.append(m.queue_offset)
            else:
                m.reconsume_times += 1
                again.append(m)
        if done:
            qs.ack(done)
        if again:
            with self._later_cond:
                heapq.heappush(self._later, (time.monotonic() + self.reconsume_delay_s, next(self._seq), qs, again))
                self._later_cond.notify()

    def _later_loop(self) -> None:
        while not self._stopping.is_set():
            with self._later_cond:
                now = time.monotonic()
                if not self._later:
                    self._later_cond.wait(0.2)
                    continue
                if self._later[0][0] > now:
                    self._later_cond.wait(min(0.2, self._later[0][0] - now))
                    continue
                _, _, qs, msgs = heapq.heappop(self._later)
            if not qs.dropped and not self._stopping.is_set():
                self._pool.submit(self._consume_pooled, qs, msgs)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop pulling, finish the listener calls under way, commit offsets, leave the group."""
        if not self._started:
            self._stopping.set()
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self.transport.close()
            return
        states = self._stop_pulling()
        with self._later_cond:
            self._later.clear()
            self._later_cond.notify_all()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
        end = time.monotonic() + timeout          # listener calls running on reader threads end too
        taken = sum(self._slots.acquire(timeout=max(0.0, end - time.monotonic())) for _ in range(self.threads))
        for _ in range(taken):
            self._slots.release()
        self.commit_all(extra=states)
        self._unregister()
        self.transport.close()
        self._started = False

    def __enter__(self) -> PushConsumer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
