"""The Raft shell around the pure state machine: pysyncobj carries `state.Command`s between the
controller nodes, with a journal and snapshots (full dumps) in the data directory, so a node that
restarts (even all of them) recovers its state.

Owns: the SyncObj, its configuration, the replicated `submit` method (applies a command to
`ControllerState` on every node, in log order) and thread-safe reads of the state. Never decides
anything itself: validation is the state's, elections are the server's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.monotonic import monotonic as monotonic_time

from orbitmq.controller.config import ControllerConfig
from orbitmq.controller.raft_transport import DialMapTransport
from orbitmq.controller.state import Command, ControllerState, Result

log = logging.getLogger("orbitmq.controller.raft")

FAIL_NAMES = {v: k for k, v in vars(FAIL_REASON).items() if isinstance(v, int)}


class StateConsumer(SyncObjConsumer):
    """Holds the replicated `ControllerState` (serialized into pysyncobj's snapshots)."""

    def __init__(self) -> None:
        # attributes set before SyncObjConsumer.__init__ are not part of the snapshot
        self.lock = threading.RLock()
        self.on_applied: Callable[[Command, Result], None] | None = None
        super().__init__()
        self.state = ControllerState()

    @replicated
    def submit(self, cmd: Command) -> Result:
        with self.lock:
            result = self.state.apply(cmd)
        hook = self.on_applied
        if hook is not None:
            try:
                hook(cmd, result)
            except Exception:  # noqa: BLE001 - a notification failure must not break the log
                log.exception("on_applied hook failed")
        return result


class RaftNode:
    """One controller node's Raft member."""

    def __init__(self, cfg: ControllerConfig, on_applied: Callable[[Command, Result], None] | None = None) -> None:
        data = Path(cfg.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        conf = SyncObjConf(
            journalFile=str(data / "raft.journal"),
            fullDumpFile=str(data / "raft.dump"),
            dynamicMembershipChange=False,
            appendEntriesUseBatch=cfg.raft_batch_appends,
            autoTick=True,
            raftMinTimeout=cfg.raft_min_timeout_s,
            raftMaxTimeout=cfg.raft_max_timeout_s,
            appendEntriesPeriod=cfg.raft_append_period_s,
            connectionTimeout=max(3.5, cfg.raft_max_timeout_s),
            connectionRetryTime=0.5,
            leaderFallbackTimeout=cfg.raft_max_timeout_s,
            commandsWaitLeader=False,
            logCompactionMinEntries=cfg.log_compaction_entries,
            useFork=False,          # never fork a process that runs gRPC threads
            bindRetryTime=0.5,
            # authenticates (HMAC) and encrypts every Raft message before pysyncobj unpickles it;
            # None only with insecure_raft on loopback (validated by the config)
            password=cfg.raft_password(),
        )
        self.consumer = StateConsumer()
        self.consumer.on_applied = on_applied
        self.obj = SyncObj(cfg.raft_addr, list(cfg.peers), conf=conf, consumers=[self.consumer],
                           transportClass=DialMapTransport)   # peers dialed through the dial map

    # -- commands --

    def submit(self, cmd: Command, callback: Callable[[Any, int], None]) -> None:
        """Append `cmd`; `callback(result, fail_code)` runs on the Raft thread once applied here."""
        self.consumer.submit(cmd, callback=callback)

    # -- reads --

    def read(self, fn: Callable[[ControllerState], Any]) -> Any:
        """Run `fn` on the state under the state lock (consistent snapshot of this node's copy)."""
        with self.consumer.lock:
            return fn(self.consumer.state)

    @property
    def state(self) -> ControllerState:
        return self.consumer.state

    def is_leader(self) -> bool:
        return bool(self.obj._isLeader())

    def term(self) -> int:
        return int(getattr(self.obj, "raftCurrentTerm", 0))

    def leader_raft_address(self) -> str:
        node = self.obj._getLeader()
        return "" if node is None else str(getattr(node, "address", node))

    def status(self) -> dict[str, Any]:
        try:
            return dict(self.obj.getStatus())
        except RuntimeError:   # its dicts changed while we read them: try once more
            return dict(self.obj.getStatus())

    def peer_connected(self, raft_address: str) -> bool:
        for node in getattr(self.obj, "otherNodes", ()):
            if str(getattr(node, "address", node)) == raft_address:
                return bool(self.obj.isNodeConnected(node))
        return False

    def majority_contact_age(self) -> float:
        """Seconds since this node last heard from a majority (its own vote included); 0 alone.
        pysyncobj applies its leader fallback only on its own tick; a node just resumed from a
        pause still says it leads until then, so the server checks this on demand."""
        others = len(getattr(self.obj, "otherNodes", ()))
        if others == 0:
            return 0.0
        need = (others + 1) // 2    # responses from other nodes that make a majority with our own
        for _ in range(3):
            try:
                times = sorted(getattr(self.obj, "_SyncObj__lastResponseTime", {}).values(), reverse=True)
                break
            except RuntimeError:   # the Raft thread changed the dict while we read it
                continue
        else:
            return float("inf")
        if len(times) < need:
            return float("inf")
        return max(0.0, monotonic_time() - times[need - 1])

    def destroy(self) -> None:
        self.obj.destroy()


def fail_name(code: int) -> str:
    return FAIL_NAMES.get(code, str(code))
