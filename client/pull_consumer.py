"""`PullConsumer` (lite pull): background pulls fill a buffer; `poll()` hands out a batch.

Owns: assign(queues) or subscribe(topic) (then queues are rebalanced among the group like the push
consumer), `poll(timeout)`, `commit()` (sync: commits everything handed out by poll so far) and
auto-commit (the same, every `auto_commit_interval_s`). What poll returned counts as consumed.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from orbitmq.client import errors
from orbitmq.client.consumer_base import ConsumerBase, QueueState
from orbitmq.client.received import Messages
from orbitmq.client.routes import MessageQueue


class PullConsumer(ConsumerBase):
    """Lite pull consumer; see `ConsumerBase` for the shared settings."""

    def __init__(self, group: str, namesrv: str | list[str], *, auto_commit: bool = True,
                 auto_commit_interval_s: float = 5.0, max_poll_messages: int = 256, **kw: Any) -> None:
        kw.setdefault("commit_interval_s", auto_commit_interval_s)
        super().__init__(group, namesrv, **kw)
        self.auto_commit = auto_commit
        self.max_poll_messages = max_poll_messages
        self._buffer: queue.Queue[tuple[QueueState, Messages]] = queue.Queue()
        self._carry: tuple[QueueState, Messages] | None = None

    def assign(self, queues: list[MessageQueue]) -> None:
        """Consume exactly these queues (no group rebalancing); call before start()."""
        if not queues:
            raise errors.BadRequestError("assign() needs at least one queue")
        self._fixed = sorted(queues)
        for mq in queues:
            self.subscriptions.setdefault(mq.topic, "*")

    def topic_queues(self, topic: str) -> list[MessageQueue]:
        """The readable queues of `topic` (for assign())."""
        return list(self.transport.route(topic).read_queues)

    def _deliver(self, qs: QueueState, msgs: Messages) -> None:
        self._buffer.put((qs, msgs))

    def poll(self, timeout: float = 1.0) -> Messages:
        """Up to `max_poll_messages` messages, waiting up to `timeout` s for the first ones.

        The result is a read-only sequence (`client.received.Messages`): a message of a batch record
        is made when it is read, so a loop that reads and drops them keeps few alive. `list(...)`
        makes them all."""
        if not self._started:
            self.start()
        out: list[Messages] = []
        got = 0
        deadline = time.monotonic() + timeout
        while got < self.max_poll_messages:
            if self._carry is not None:
                qs, msgs = self._carry
                self._carry = None
            else:
                try:
                    wait = max(0.0, deadline - time.monotonic()) if not out else 0.0
                    qs, msgs = self._buffer.get(timeout=wait) if wait > 0 else self._buffer.get_nowait()
                except queue.Empty:
                    break
            if qs.dropped:
                continue
            room = self.max_poll_messages - got
            if len(msgs) > room:
                msgs, rest = msgs[:room], msgs[room:]
                self._carry = (qs, rest)
            qs.ack(msgs.offsets())
            out.append(msgs)
            got += len(msgs)
        return Messages.join(out)

    def _commit_loop(self) -> None:
        if self.auto_commit:
            super()._commit_loop()

    def commit(self) -> None:
        """Commit (synchronously) the offsets of everything poll() has returned."""
        self.commit_all()

    def close(self) -> None:
        """Stop pulling; with auto-commit, commit what was polled; leave the group."""
        if self._started:
            states = self._stop_pulling()
            if self.auto_commit:
                self.commit_all(extra=states)
            self._unregister()
            self._started = False
        self.transport.close()

    def __enter__(self) -> PullConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
