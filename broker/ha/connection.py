"""One replication connection as an explicit state machine (sans-IO, in the manner of h11): bytes
and events in, actions out. No sockets, files, clocks or threads; time is passed in.

Owns: the follower side (AWAIT_WELCOME -> STREAMING -> CLOSED: send HELLO with our epoch list;
on WELCOME compute the truncation point (epoch_truncation.py) and order the store truncated and
then the epoch file, durably, in that order (#10666); then for each DATA frame check it continues
our log, add an epoch entry before the first bytes of a new epoch, append the raw bytes, raise
the confirm offset to min(master's confirm, own end), and ack after every append and at least
every `heartbeat_s`), and the master side (AWAIT_HELLO -> AWAIT_FIRST_ACK -> STREAMING ->
CLOSED: answer HELLO with WELCOME, take the follower's first ACK as where to stream from, then
plan DATA frames of at most `frame_bytes` that never cross an epoch boundary, heartbeats when
idle, and report every ACK).

The shells (ha_follower.py, ha_master.py, and the simulator in tests/sim/) carry the actions out
in order: `Truncate`, `StartLogAt` (what the follower holds ends before the master's first
retained offset: it empties its store and starts its log there), `TruncateEpochs`, `AppendEpoch`, `AppendRaw`, `WaitFlushed`, `SetConfirm`,
`Send`. A peer's bad input raises `hp.FrameError` or `ReplicationRefused` and closes the machine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from orbitmq.broker.ha import protocol as hp
from orbitmq.broker.ha.epoch_truncation import epoch_at, epoch_range_end, find_truncation_point
from orbitmq.broker.ha.epochs import EpochEntry
from orbitmq.broker.ha.hello_check import HelloPolicy, admit_hello, sign_hello


class ReplicationRefused(Exception):
    """The peer refused us, or its stream cannot continue ours (the follower reconnects)."""


class ConnState(enum.Enum):
    AWAIT_HELLO = "AWAIT_HELLO"            # master side: nothing received yet
    AWAIT_WELCOME = "AWAIT_WELCOME"        # follower side: HELLO sent
    AWAIT_FIRST_ACK = "AWAIT_FIRST_ACK"    # master side: WELCOME sent
    STREAMING = "STREAMING"
    CLOSED = "CLOSED"


# ---- actions (carried out by the shell, in order) --------------------------------------------------

@dataclass(frozen=True)
class Send:
    frame: hp.Frame


@dataclass(frozen=True)
class Truncate:
    """Cut the store (commitlog and every index) to [0, offset), durably."""

    offset: int


@dataclass(frozen=True)
class TruncateEpochs:
    """Drop epoch entries starting at or after `offset` (after the store is cut), durably."""

    offset: int


@dataclass(frozen=True)
class StartLogAt:
    """Drop the whole local log (and its indexes) and continue as an empty log starting at
    `offset`, the master's first retained offset: what we hold ends before the master's log
    starts (a new or wiped replica, or one away for longer than the master kept its segments)."""

    offset: int


@dataclass(frozen=True)
class AppendEpoch:
    """Add (epoch, start) to the epoch file before any byte of that epoch is appended."""

    epoch: int
    start: int


@dataclass(frozen=True)
class AppendRaw:
    start: int
    body: bytes


@dataclass(frozen=True)
class WaitFlushed:
    """Sync flush: wait until the store has [0, offset) on disk before the ack that follows."""

    offset: int


@dataclass(frozen=True)
class SetConfirm:
    offset: int


Action = Send | Truncate | StartLogAt | TruncateEpochs | AppendEpoch | AppendRaw | WaitFlushed | SetConfirm


# ---- follower side ---------------------------------------------------------------------------------

class FollowerConnection:
    """The follower's (or learner's) side of one connection to its master."""

    def __init__(self, broker_id: int, learner: bool, min_master_epoch: int = 0, heartbeat_s: float = 1.0,
                 sync_flush: bool = False, secret: bytes | None = None) -> None:
        self.secret = secret   # the cluster secret: the HELLO is signed with it
        self.broker_id = broker_id
        self.learner = learner
        self.min_master_epoch = min_master_epoch
        self.heartbeat_s = heartbeat_s
        self.sync_flush = sync_flush
        self.state = ConnState.AWAIT_WELCOME
        self.decoder = hp.FrameDecoder()
        self.own_max = 0
        self.epochs: list[EpochEntry] = []
        self.confirm = 0
        self.master_max = 0
        self.master_confirm = 0
        self.master_epoch = 0
        self.truncated: tuple[int, int] | None = None   # (from, to) when the handshake cut a tail
        self.last_ack = float("-inf")
        self.frames = 0
        self.bytes = 0

    def start(self, max_offset: int, epochs: list[EpochEntry], confirm_offset: int = 0,
              now_ms: int = 0) -> list[Action]:
        """The connection is open: say who we are and what we hold (signed at `now_ms`, wall clock,
        if we have the cluster secret)."""
        self.own_max, self.epochs, self.confirm = max_offset, list(epochs), confirm_offset
        hello = hp.Hello(self.broker_id, self.learner, max_offset, tuple(epochs))
        if self.secret is not None:
            hello = sign_hello(hello, self.secret, now_ms)
        return [Send(hello)]

    def receive_data(self, data: bytes, now: float) -> list[Action]:
        """Bytes from the master; raises FrameError / ReplicationRefused (the machine closes)."""
        if self.state is ConnState.CLOSED:
            raise ReplicationRefused("connection already closed")
        try:
            was_streaming = self.state is ConnState.STREAMING
            frames = self.decoder.feed(data)
            out: list[Action] = []
            moved = False
            for f in frames:
                if isinstance(f, hp.Refuse):
                    raise ReplicationRefused(f"{f.code}: {f.message}")
                if self.state is ConnState.AWAIT_WELCOME:
                    if not isinstance(f, hp.Welcome):
                        raise hp.FrameError(f"expected WELCOME, got {type(f).__name__}")
                    out += self._welcome(f, now)
                elif not isinstance(f, hp.Data):
                    raise hp.FrameError(f"unexpected {type(f).__name__} from the master")
                else:
                    self.master_max, self.master_confirm = f.master_max, f.confirm_offset
                    if f.body:
                        out += self._data(f)
                        moved = True
            if self.state is ConnState.STREAMING and frames and (was_streaming or moved):
                c = min(self.master_confirm, self.own_max)
                if c > self.confirm:
                    self.confirm = c
                    out.append(SetConfirm(c))
                if moved or now - self.last_ack >= self.heartbeat_s:
                    if moved and self.sync_flush:
                        out.append(WaitFlushed(self.own_max))
                    out.append(Send(hp.Ack(self.own_max)))
                    self.last_ack = now
            return out
        except (hp.FrameError, ReplicationRefused):
            self.state = ConnState.CLOSED
            raise

    def connection_closed(self) -> None:
        """The master closed the stream (raises FrameError if it stopped inside a frame)."""
        self.state = ConnState.CLOSED
        self.decoder.finish()

    @property
    def lag(self) -> int:
        return max(0, self.master_max - self.own_max)

    def _welcome(self, w: hp.Welcome, now: float) -> list[Action]:
        if w.master_epoch < self.min_master_epoch:
            raise ReplicationRefused(f"master epoch {w.master_epoch} is older than {self.min_master_epoch}")
        self.master_epoch = w.master_epoch
        point = find_truncation_point(list(w.epochs), w.max_offset, self.epochs, self.own_max)
        out: list[Action] = []
        if point.offset < w.min_offset:
            # nothing we could keep reaches the master's first retained offset: start over there
            # (the store first, then the epoch file, as for a truncation)
            out.append(StartLogAt(w.min_offset))
            if self.own_max > 0:
                self.truncated = (self.own_max, w.min_offset)
            self.own_max = w.min_offset
            self.confirm = w.min_offset
            out.append(TruncateEpochs(0))
            self.epochs = []
        elif point.offset < self.own_max:
            # the store first, then the epoch file: a crash in between cannot attribute a kept
            # tail to the wrong epoch, never the other way round
            out.append(Truncate(point.offset))
            self.truncated = (self.own_max, point.offset)
            self.own_max = point.offset
        if not isinstance(out[0] if out else None, StartLogAt):
            # epochs starting at or after the point hold nothing we keep (also one we opened as a
            # master but never wrote in); the master's data re-adds the entries it needs
            out.append(TruncateEpochs(point.offset))
            self.epochs = [e for e in self.epochs if e.start_offset < point.offset]
        self.master_max, self.master_confirm = w.max_offset, w.confirm_offset
        self.confirm = min(self.confirm, self.own_max)
        self.state = ConnState.STREAMING
        out.append(Send(hp.Ack(self.own_max)))
        self.last_ack = now
        return out

    def _data(self, f: hp.Data) -> list[Action]:
        if f.start != self.own_max:
            raise ReplicationRefused(f"DATA starts at {f.start}, our log ends at {self.own_max}")
        out: list[Action] = []
        last = self.epochs[-1] if self.epochs else None
        if last is None or last.epoch != f.epoch:
            if last is not None and f.epoch < last.epoch:
                raise ReplicationRefused(f"DATA of epoch {f.epoch} after our epoch {last.epoch}")
            # the entry goes first: bytes must never exist without the epoch that wrote them
            out.append(AppendEpoch(f.epoch, f.epoch_start))
            self.epochs.append(EpochEntry(f.epoch, f.epoch_start))
        out.append(AppendRaw(f.start, f.body))
        self.own_max = f.end
        self.frames += 1
        self.bytes += len(f.body)
        return out


# ---- master side -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MasterLog:
    """What the master's side needs to know of its log at one moment."""

    max_offset: int
    min_offset: int
    confirm_offset: int
    epochs: tuple[EpochEntry, ...]


@dataclass(frozen=True)
class Hello:
    """A follower introduced itself (the shell registers the connection under `broker_id`)."""

    broker_id: int
    learner: bool


@dataclass(frozen=True)
class Acked:
    """The follower holds [0, offset). `first`: the ack after the handshake (it is connected now)."""

    offset: int
    first: bool


@dataclass(frozen=True)
class Chunk:
    """The next DATA frame to send: the shell reads up to `size` bytes at `start` (whole records)."""

    start: int
    size: int
    epoch: int
    epoch_start: int
    limit: int          # where this epoch's range ends on the master's log (no frame crosses it)


class MasterConnection:
    """The master's side of one follower's connection."""

    def __init__(self, master_id: int, master_epoch: int, frame_bytes: int = 1 << 20,
                 heartbeat_s: float = 1.0, policy: HelloPolicy | None = None,
                 max_payload: int = hp.HELLO_MAX_PAYLOAD) -> None:
        self.policy = policy if policy is not None else HelloPolicy(master_id)
        self.master_id = master_id
        self.master_epoch = master_epoch
        self.frame_bytes = frame_bytes
        self.heartbeat_s = heartbeat_s
        self.state = ConnState.AWAIT_HELLO
        self.decoder = hp.FrameDecoder(max_payload)   # a follower only sends HELLO and ACKs
        self.broker_id = -1
        self.learner = False
        self.pos = 0
        self.ack = -1
        self.last_sent = float("-inf")

    def receive_data(self, data: bytes, log: MasterLog, serving: bool = True,
                     now_ms: int = 0) -> list[Action | Hello | Acked]:
        """Bytes from the follower; `serving` False once this master stepped down; `now_ms` (wall
        clock) checks a signed HELLO's time."""
        if self.state is ConnState.CLOSED:
            raise ReplicationRefused("connection already closed")
        try:
            out: list[Action | Hello | Acked] = []
            frames = self.decoder.feed(data)
            if self.state is not ConnState.STREAMING and len(frames) > 1:
                raise hp.FrameError("peer sent more than one frame during the handshake")
            for f in frames:
                if isinstance(f, hp.Refuse):
                    raise ReplicationRefused(f"{f.code}: {f.message}")
                if self.state is ConnState.AWAIT_HELLO:
                    if not isinstance(f, hp.Hello):
                        raise hp.FrameError(f"expected HELLO, got {type(f).__name__}")
                    if not serving:
                        self.state = ConnState.CLOSED
                        return [Send(hp.Refuse("NOT_MASTER", "not master any more"))]
                    refusal = admit_hello(f, self.policy, now_ms)
                    if refusal is not None:
                        self.state = ConnState.CLOSED
                        return [Send(refusal.frame())]
                    self.broker_id, self.learner = f.broker_id, f.learner
                    self.state = ConnState.AWAIT_FIRST_ACK
                    out += [Hello(f.broker_id, f.learner),
                            Send(hp.Welcome(self.master_id, self.master_epoch, log.max_offset, log.min_offset,
                                            log.confirm_offset, log.epochs))]
                elif not isinstance(f, hp.Ack):
                    raise hp.FrameError(f"unexpected {type(f).__name__} from a follower")
                else:
                    if f.offset > log.max_offset:
                        raise hp.FrameError(f"replica {self.broker_id} acked {f.offset}, beyond the master's "
                                            f"end {log.max_offset}")
                    first = self.state is ConnState.AWAIT_FIRST_ACK
                    if first:
                        self.pos = f.offset
                        self.state = ConnState.STREAMING
                    self.ack = f.offset
                    out.append(Acked(f.offset, first))
            return out
        except (hp.FrameError, ReplicationRefused):
            self.state = ConnState.CLOSED
            raise

    def next_chunk(self, log: MasterLog) -> Chunk | None:
        """The next DATA frame to send from `pos` (None: the follower has everything)."""
        if self.state is not ConnState.STREAMING or self.pos >= log.max_offset:
            return None
        entry = epoch_at(list(log.epochs), self.pos)
        if entry is None:
            raise RuntimeError(f"no epoch covers offset {self.pos}")
        limit = min(log.max_offset, epoch_range_end(list(log.epochs), entry.epoch, log.max_offset))
        return Chunk(self.pos, min(self.frame_bytes, limit - self.pos), entry.epoch, entry.start_offset, limit)

    def data_frame(self, chunk: Chunk, body: bytes, log: MasterLog, now: float) -> hp.Data:
        """The DATA frame for `chunk` with the bytes the store returned; advances `pos`."""
        if not body:
            raise ValueError(f"no bytes to send at {chunk.start}")
        self.pos = chunk.start + len(body)
        self.last_sent = now
        return hp.Data(chunk.start, chunk.epoch, chunk.epoch_start, log.confirm_offset, log.max_offset, body)

    def heartbeat(self, log: MasterLog, now: float) -> hp.Data | None:
        """An empty DATA frame (carrying the confirm offset) if nothing was sent for `heartbeat_s`."""
        if self.state is not ConnState.STREAMING or now - self.last_sent < self.heartbeat_s:
            return None
        self.last_sent = now
        return hp.Data(self.pos, self.master_epoch, self.pos, log.confirm_offset, log.max_offset, b"")

    def close(self) -> None:
        self.state = ConnState.CLOSED
