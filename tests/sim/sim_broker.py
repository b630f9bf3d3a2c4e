"""A simulated broker replica: the real pure cores (roles, the replication connections' state
machines and the frame codec, the sync-state-set, the acknowledgement policy and lease, the
epoch truncation rule) behind a shell that moves bytes over the simulated network and keeps its
commitlog and epoch list in memory.

What survives a crash: the commitlog bytes and the epoch list (a killed process keeps the page
cache; truncations and epoch-file writes are durable when they return). Everything else (role,
lease, confirm offset, connections, waiting sends) is lost. The follower shell carries out one
disk action at a time with a small I/O latency, so a crash can land between them (for instance
between truncating the log and trimming the epoch list).
"""

from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from orbitmq.broker.ha import connection as hc
from orbitmq.broker.ha import protocol as hp
from orbitmq.broker.ha.ack_policy import AckPolicy, Lease, acknowledged_upto
from orbitmq.broker.ha.epochs import EpochEntry, validate
from orbitmq.broker.ha.roles import Change, Role, decide, master_epoch_start, next_role
from orbitmq.broker.ha.sync_state import SyncStateSet
from orbitmq.controller.election import Live

if TYPE_CHECKING:
    from sim_controller import View
    from sim_net import Stream
    from sim_world import World

REC = 16
_REC = struct.Struct(">QII")      # message id, epoch that wrote it, magic
MAGIC = 0x0B17C0DE


def record(msg_id: int, epoch: int) -> bytes:
    return _REC.pack(msg_id, epoch, MAGIC)


def records(body: bytes | bytearray) -> list[tuple[int, int]]:
    if len(body) % REC:
        raise ValueError(f"{len(body)} bytes are not whole records")
    out = []
    for i in range(0, len(body), REC):
        mid, ep, magic = _REC.unpack_from(body, i)
        if magic != MAGIC:
            raise ValueError(f"bad record at {i}")
        out.append((mid, ep))
    return out


class SimBroker:
    HEARTBEAT_S = 0.5
    HOUSEKEEPING_S = 0.2
    LEASE_S = 2.0
    ACK_TIMEOUT_S = 3.0
    MAX_LAG_S = 5.0
    IDLE_TIMEOUT_S = 6.0
    RECONNECT_S = 0.3
    HA_HEARTBEAT_S = 1.0

    def __init__(self, world: World, set_name: str, broker_id: int, learner: bool, frame_records: int) -> None:
        self.w = world
        self.sim, self.net = world.sim, world.net
        self.key = ("sim", set_name)
        self.set_name = set_name
        self.id = broker_id
        self.name = f"{set_name}-{broker_id}"
        self.learner = learner
        self.frame_bytes = frame_records * REC
        self.policy = AckPolicy("all", -1)
        # durable
        self.log = bytearray()
        self.epochs: list[EpochEntry] = []
        self.ids: dict[int, int] = {}        # message id -> offset (derived from the log)
        self.life = 0
        self.truncations = 0
        self._reset()

    # ---- process lifecycle ----------------------------------------------------------------------------

    def _reset(self) -> None:
        self.role = Role.NONE
        self.epoch = 0
        self.master_id: int | None = None
        self.master_node = ""
        self.lease = Lease(self.LEASE_S)
        self.sss: SyncStateSet | None = None
        self.conns: dict[int, tuple[hc.MasterConnection, Stream]] = {}
        self.accepting: dict[int, hc.MasterConnection] = {}    # id(stream) -> machine before HELLO
        self.follower: hc.FollowerConnection | None = None
        self.fstream: Stream | None = None
        self.actions: deque[hc.Action] = deque()
        self.busy = False
        self.confirm = 0
        self.waiters: list[tuple[int, float, int, int, Any]] = []   # (end, deadline, msg, offset, reply)
        self.ctl_idx = self.w.rng.randrange(len(self.w.ctl_names))
        self.gen = self.w.next_gen()
        self.seq = 0
        self.hb_pending: dict[int, float] = {}
        self.alter_req: int | None = None
        self.alter_sent = 0.0
        self.replica_count = 1
        self.last_read: dict[int, float] = {}
        self.connecting = False

    def boot(self) -> None:
        self.life += 1
        self._reset()
        self.net.up[self.name] = True
        self.later(self.w.rng.random() * 0.1, self._heartbeat_tick)
        self.later(self.w.rng.random() * 0.2, self._housekeeping)

    def crash(self) -> None:
        if not self.net.up.get(self.name):
            return
        ctl = self.w.ctl_names[self.ctl_idx]
        if (self.name, ctl) not in self.net.cut:   # the session's socket is reset by the kernel
            c = self.w.ctls[ctl]
            self.sim.at(self.net.delay(), self._tell_closed, c, self.key, self.id, self.gen)
        self.net.node_down(self.name)
        self.life += 1
        self._reset()

    def _tell_closed(self, c: Any, key: Any, bid: int, gen: int) -> None:
        if self.net.up.get(c.name, False):
            c.on_session_closed(key, bid, gen)

    def later(self, delay: float, fn: Any, *args: Any) -> None:
        life = self.life

        def run() -> None:
            if self.life == life and self.net.up.get(self.name, False):
                wait = self.net.paused_for(self.name)
                if wait:
                    self.sim.at(wait, run)   # a stopped process runs its timers late, in order
                else:
                    fn(*args)
        self.sim.at(delay, run)

    @property
    def up(self) -> bool:
        return self.net.up.get(self.name, False)

    # ---- the controller conversation -----------------------------------------------------------------

    def _heartbeat_tick(self) -> None:
        self.later(self.HEARTBEAT_S, self._heartbeat_tick)
        now = self.sim.now
        if self.hb_pending and now - min(self.hb_pending.values()) > 1.0:
            self._switch_controller()
        ctl = self.w.ctl_names[self.ctl_idx]
        self.seq += 1
        self.hb_pending[self.seq] = now
        last = self.epochs[-1].epoch if self.epochs else 0
        self.net.send(self.name, ctl, self.w.ctls[ctl].on_heartbeat, self.name, self.key, self.id, self.gen,
                      self.seq, Live(last, len(self.log), self.confirm), dup=True)

    def _switch_controller(self) -> None:
        old = self.w.ctls[self.w.ctl_names[self.ctl_idx]]
        self.net.send(self.name, old.name, old.on_session_closed, self.key, self.id, self.gen, lossy=False)
        self.gen = self.w.next_gen()
        self.hb_pending.clear()
        self.ctl_idx = (self.ctl_idx + 1) % len(self.w.ctl_names)

    def on_heartbeat_reply(self, ctl: str, seq: int, view: View | None) -> None:
        sent = self.hb_pending.pop(seq, None)
        if sent is None:
            return
        if view is None:
            self._switch_controller()
            return
        self.lease.renew(sent)
        self.on_view(view)

    def on_push(self, ctl: str, gen: int, view: View) -> None:
        if gen == self.gen:
            self.on_view(view)

    def on_view(self, v: View) -> None:
        self.replica_count = max(1, v.replica_count)
        mid = v.master_id or None
        master_node = f"{self.set_name}-{mid}" if mid else ""
        following = self.master_node if self.role in (Role.FOLLOWER, Role.LEARNER) else ""
        change = decide(self.role, self.epoch, self.id, self.learner, mid, v.master_epoch, master_node, following)
        if change in (Change.IGNORE, Change.KEEP, Change.REFUSE_MASTER):
            return
        if change is Change.ADOPT_SSS:
            if self.sss is not None and self.sss.adopt(v.sss, v.sss_epoch):
                self._update_confirm()
                self._release()
        elif change is Change.BECOME_MASTER:
            self._become_master(v)
        elif change is Change.FOLLOW:
            self._become_follower(v, mid or 0, master_node)
        elif change is Change.NO_MASTER:
            if self.role is Role.MASTER and v.master_epoch > self.epoch:
                self._stop_master()
                self.role = next_role(self.role, change, self.learner)
            self.epoch = max(self.epoch, v.master_epoch)

    def _become_master(self, v: View) -> None:
        last = self.epochs[-1] if self.epochs else None
        start = master_epoch_start(last, v.master_epoch, len(self.log))
        if start is None:
            return
        self._stop_follower()
        self._stop_master()
        append, at = start
        if append:
            self.epochs.append(EpochEntry(v.master_epoch, at))
            validate(self.epochs)
        self.epoch = v.master_epoch
        self.master_id, self.master_node = self.id, self.name
        self.role = next_role(self.role, Change.BECOME_MASTER, self.learner)
        self.sss = SyncStateSet(self.id, self.epoch, at, set(v.sss) | {self.id}, v.sss_epoch, self.MAX_LAG_S,
                                self.sim.now, confirm_offset=self.confirm)
        self.w.on_became_master(self)

    def _become_follower(self, v: View, master_id: int, master_node: str) -> None:
        self._stop_master()
        self._stop_follower()
        self.epoch = v.master_epoch
        self.master_id, self.master_node = master_id, master_node
        self.role = next_role(self.role, Change.FOLLOW, self.learner)
        self._connect()

    # ---- follower side -------------------------------------------------------------------------------

    def _connect(self) -> None:
        if self.role not in (Role.FOLLOWER, Role.LEARNER) or self.fstream is not None or self.connecting:
            return
        target = self.w.brokers.get(self.master_node)
        if target is None or not self.net.reachable(self.name, target.name) or \
                not self.net.reachable(target.name, self.name) or target.role is not Role.MASTER:
            self.connecting = True
            self.later(self.RECONNECT_S, self._retry_connect)
            return
        s = self.net.connect(self.name, target.name)
        s.handlers[self.name] = self._on_fdata
        s.closers[self.name] = self._on_fclosed
        self.fstream = s
        self.last_read[id(s)] = self.sim.now
        self.follower = hc.FollowerConnection(self.id, self.learner, self.epoch, self.HA_HEARTBEAT_S)
        target.accept(s)
        self._queue(self.follower.start(len(self.log), list(self.epochs), self.confirm))

    def _retry_connect(self) -> None:
        self.connecting = False
        self._connect()

    def _on_fdata(self, s: Stream, data: bytes) -> None:
        if s is not self.fstream or self.follower is None:
            return
        self.last_read[id(s)] = self.sim.now
        try:
            acts = self.follower.receive_data(data, self.sim.now)
        except (hp.FrameError, hc.ReplicationRefused):
            self.w.stats["ha_errors"] += 1
            self._drop_follower_stream()
            return
        self._queue(acts)

    def _on_fclosed(self, s: Stream) -> None:
        if s is self.fstream:
            self._drop_follower_stream()

    def _drop_follower_stream(self) -> None:
        if self.fstream is not None:
            self.fstream.close(self.name)
        self.fstream = None
        self.follower = None
        self.actions.clear()
        if self.role in (Role.FOLLOWER, Role.LEARNER) and not self.connecting:
            self.connecting = True
            self.later(self.RECONNECT_S, self._retry_connect)

    def _stop_follower(self) -> None:
        if self.fstream is not None:
            self.fstream.close(self.name)
        self.fstream = None
        self.follower = None
        self.actions.clear()

    def _queue(self, acts: list[hc.Action]) -> None:
        self.actions.extend(acts)
        if not self.busy:
            self._run_actions()

    def _run_actions(self) -> None:
        """Carry out the follower's actions in order; disk actions take a little time."""
        self.busy = False
        while self.actions:
            a = self.actions.popleft()
            if isinstance(a, hc.Send):
                if self.fstream is not None:
                    self.fstream.write(self.name, hp.encode(a.frame))
            elif isinstance(a, hc.AppendRaw):
                self._append(a.start, a.body)
            elif isinstance(a, hc.SetConfirm):
                self._set_confirm(min(a.offset, len(self.log)))
            elif isinstance(a, hc.WaitFlushed):
                pass
            else:
                if isinstance(a, hc.Truncate):
                    self.w.check_truncate(self, a.offset)
                    self._truncate(a.offset)
                elif isinstance(a, hc.TruncateEpochs):
                    self.epochs = [e for e in self.epochs if e.start_offset < a.offset]
                elif isinstance(a, hc.AppendEpoch):
                    self.epochs.append(EpochEntry(a.epoch, a.start))
                    validate(self.epochs)
                self.busy = True
                self.later(0.0005 + self.w.rng.random() * 0.002, self._run_actions)
                return

    def _append(self, start: int, body: bytes) -> None:
        if start != len(self.log):
            raise AssertionError(f"{self.name}: append at {start}, log ends at {len(self.log)}")
        for i, (mid, _ep) in enumerate(records(body)):
            if mid in self.ids:
                self.w.fail(f"{self.name}: message {mid} twice in the log (at {self.ids[mid]} and {start + i * REC})")
            self.ids[mid] = start + i * REC
        self.log += body

    def _truncate(self, offset: int) -> None:
        if offset < len(self.log):
            for mid, _ in records(self.log[offset:]):
                self.ids.pop(mid, None)
            del self.log[offset:]
            self.truncations += 1
            self.w.stats["truncations"] += 1
        self.confirm = min(self.confirm, offset)
        self.w.truncated(self, offset)

    def _set_confirm(self, c: int) -> None:
        if c > self.confirm:
            self.confirm = c
            self.w.on_confirm(self)

    # ---- master side ---------------------------------------------------------------------------------

    def accept(self, s: Stream) -> None:
        m = hc.MasterConnection(self.id, self.epoch, self.frame_bytes, self.HA_HEARTBEAT_S)
        self.accepting[id(s)] = m
        s.handlers[self.name] = lambda st, data, m=m: self._on_mdata(st, m, data)
        s.closers[self.name] = lambda st, m=m: self._on_mclosed(st, m)
        self.last_read[id(s)] = self.sim.now

    def _log_view(self) -> hc.MasterLog:
        mx = len(self.log)
        c = self.sss.confirm_offset(mx) if self.sss is not None else self.confirm
        return hc.MasterLog(mx, 0, c, tuple(self.epochs))

    def _on_mdata(self, s: Stream, m: hc.MasterConnection, data: bytes) -> None:
        if s.closed:
            return
        self.last_read[id(s)] = self.sim.now
        try:
            acts = m.receive_data(data, self._log_view(), serving=self.role is Role.MASTER and self.sss is not None)
        except (hp.FrameError, hc.ReplicationRefused):
            self.w.stats["ha_errors"] += 1
            s.close(self.name)
            self._on_mclosed(s, m)
            return
        for a in acts:
            if isinstance(a, hc.Send):
                s.write(self.name, hp.encode(a.frame))
            elif isinstance(a, hc.Hello):
                old = self.conns.get(a.broker_id)
                if old is not None:
                    old[1].close(self.name)
                self.accepting.pop(id(s), None)
                self.conns[a.broker_id] = (m, s)
            elif isinstance(a, hc.Acked) and self.sss is not None:
                if a.first:
                    self.sss.connected(m.broker_id, m.learner, self.sim.now)
                self.sss.on_ack(m.broker_id, a.offset, len(self.log), self.sim.now)
                self._update_confirm()
                self._release()
        if m.state is hc.ConnState.CLOSED:
            s.close(self.name)
            self._on_mclosed(s, m)
        else:
            self._pump(m, s)

    def _on_mclosed(self, s: Stream, m: hc.MasterConnection) -> None:
        self.accepting.pop(id(s), None)
        cur = self.conns.get(m.broker_id)
        if cur is not None and cur[1] is s:
            del self.conns[m.broker_id]
            if self.sss is not None:
                self.sss.disconnected(m.broker_id)

    def _pump(self, m: hc.MasterConnection, s: Stream) -> None:
        view = self._log_view()
        while (chunk := m.next_chunk(view)) is not None:
            size = chunk.size - chunk.size % REC or REC
            body = bytes(self.log[chunk.start:chunk.start + size])
            frame = m.data_frame(chunk, body, view, self.sim.now)
            s.write(self.name, hp.encode(frame))
            self.w.stats["frames"] += 1

    def _pump_all(self) -> None:
        for m, s in list(self.conns.values()):
            self._pump(m, s)

    def _stop_master(self) -> None:
        for _m, s in list(self.conns.values()):
            s.close(self.name)
        self.conns.clear()
        self.accepting.clear()
        for _end, _dl, mid, _off, reply in self.waiters:
            reply(mid, "NOT_MASTER", self.master_node)
        self.waiters.clear()
        self.sss = None
        self.alter_req = None

    def _update_confirm(self) -> None:
        if self.sss is not None:
            self._set_confirm(self.sss.confirm_offset(len(self.log)))

    def _holding(self, b: int) -> int:
        assert self.sss is not None
        return self.sss.holding(b, len(self.log))

    def _upto(self) -> int | None:
        assert self.sss is not None
        return acknowledged_upto(self.policy, self.sss.ack_set(), self._holding, self.replica_count)

    def _writable(self) -> str:
        if self.role is not Role.MASTER or self.sss is None:
            return "NOT_MASTER"
        if not self.lease.valid(self.sim.now):
            return "FENCED"
        return ""

    def on_send(self, msg_id: int, reply: Any) -> None:
        """A producer's send (reply(msg_id, code, detail))."""
        refusal = self._writable()
        if refusal:
            reply(msg_id, refusal, self.master_node)
            return
        off = len(self.log)
        self._append(off, record(msg_id, self.epoch))
        end = len(self.log)
        self._pump_all()
        upto = self._upto()
        if upto is None:
            reply(msg_id, "IN_SYNC_REPLICAS_NOT_ENOUGH", "")
            return
        self._update_confirm()
        if end <= upto:
            self._ack(msg_id, off, end, reply)
        else:
            self.waiters.append((end, self.sim.now + self.ACK_TIMEOUT_S, msg_id, off, reply))

    def _ack(self, msg_id: int, off: int, end: int, reply: Any) -> None:
        self.w.check_ack(self, msg_id, off, end)
        reply(msg_id, "OK", str(off))

    def _release(self) -> None:
        if not self.waiters or self._writable():
            return   # fenced: nobody is acknowledged; they fail at their deadline
        upto = self._upto()
        if upto is None:
            return
        keep = []
        for w in self.waiters:
            if w[0] <= upto:
                self._ack(w[2], w[3], w[0], w[4])
            else:
                keep.append(w)
        self.waiters = keep

    def _housekeeping(self) -> None:
        self.later(self.HOUSEKEEPING_S, self._housekeeping)
        now = self.sim.now
        for key, t in list(self.last_read.items()):
            if now - t > self.IDLE_TIMEOUT_S:
                self.last_read.pop(key, None)
                if self.fstream is not None and id(self.fstream) == key:
                    self._drop_follower_stream()
                for _bid, (m, s) in list(self.conns.items()):
                    if id(s) == key:
                        s.close(self.name)
                        self._on_mclosed(s, m)
        if self.role is not Role.MASTER or self.sss is None:
            return
        mx = len(self.log)
        self.sss.tick(mx, now)
        self._update_confirm()
        self._release()
        if self.waiters:
            refusal = self._writable()
            keep = []
            for w in self.waiters:
                if w[1] <= now:
                    w[4](w[2], refusal or "REPLICATION_TIMEOUT", "")
                else:
                    keep.append(w)
            self.waiters = keep
        view = self._log_view()
        for m, s in list(self.conns.values()):
            hb = m.heartbeat(view, now)
            if hb is not None:
                s.write(self.name, hp.encode(hb))
        if self.alter_req is not None and now - self.alter_sent > 6.0:
            self.alter_req = None
            self.sss.alter_failed()
        if self.alter_req is None:
            p = self.sss.propose(mx, now)
            if p is not None:
                self.alter_req = self.w.next_gen()
                self.alter_sent = now
                ctl = self.w.ctls[self.w.ctl_names[self.ctl_idx]]
                self.net.send(self.name, ctl.name, ctl.on_alter, self.name, self.alter_req, self.key, self.id,
                              self.epoch, p.members, self.sss.sss_epoch, dup=True)

    def on_alter_reply(self, req: int, ok: bool, members: frozenset[int] | None, sss_epoch: int | None) -> None:
        if req != self.alter_req or self.sss is None:
            return
        self.alter_req = None
        if ok and members is not None and sss_epoch is not None:
            self.sss.alter_done(members, sss_epoch)
        else:
            self.sss.alter_failed()
            if members is not None and sss_epoch is not None:
                self.sss.adopt(members, sss_epoch)
        self._update_confirm()
        self._release()
