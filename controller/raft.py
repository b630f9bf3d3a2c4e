"""The Raft shell around the pure state machine: pysyncobj carries `state.Command`s between the
controller nodes, with a journal and snapshots (full dumps) in the data directory, so a node that
restarts (even all of them) recovers its state.

Owns: the SyncObj, its configuration, the replicated `submit` method (applies a command to
`ControllerState` on every node, in log order), thread-safe reads of the state, and pysyncobj's
dynamic membership (`members`, `add_node`, `remove_node`, `transfer_leadership`, `retire`) with
the joining mode: a node started empty with `join = true` neither campaigns nor starts elections
until it has heard from a leader and caught up (`finish_join`, then the marker file
`<data_dir>/raft.joined`), so adding it never disturbs the group. Never decides anything itself:
validation is the state's and membership.py's, elections are the server's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.monotonic import monotonic as monotonic_time

from orbitmq.common.durable import replace_file
from orbitmq.controller import membership
from orbitmq.controller.config import ControllerConfig
from orbitmq.controller.raft_transport import DialMapTransport
from orbitmq.controller.state import Command, ControllerState, Result

log = logging.getLogger("orbitmq.controller.raft")

FAIL_NAMES = {v: k for k, v in vars(FAIL_REASON).items() if isinstance(v, int)}

JOINED_MARKER = "raft.joined"
QUIET_TIMEOUT_S = 10.0 ** 6     # a joining node's election timeout: it never campaigns while joining


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
        self.joined_marker = data / JOINED_MARKER
        self.joining = bool(cfg.join) and not self.joined_marker.exists()
        self.retired = False
        conf = SyncObjConf(
            journalFile=str(data / "raft.journal"),
            fullDumpFile=str(data / "raft.dump"),
            dynamicMembershipChange=True,     # admin add-node / remove-node
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
        self.conf = conf
        self.consumer = StateConsumer()
        self.consumer.on_applied = on_applied
        self.obj = SyncObj(cfg.raft_addr, list(cfg.peers), conf=conf, consumers=[self.consumer],
                           transportClass=DialMapTransport)   # peers dialed through the dial map
        if self.joining:
            # no election timeout while joining (pysyncobj reads these on every new deadline; its
            # config check at construction wants them below connectionTimeout, hence set after it)
            conf.raftMinTimeout = conf.raftMaxTimeout = QUIET_TIMEOUT_S
            self.obj._SyncObj__raftElectionDeadline = monotonic_time() + QUIET_TIMEOUT_S

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
        return not self.retired and bool(self.obj._isLeader())

    def term(self) -> int:
        return int(getattr(self.obj, "raftCurrentTerm", 0))

    def leader_raft_address(self) -> str:
        if self.retired:
            return ""
        node = self.obj._getLeader()
        return "" if node is None else str(getattr(node, "address", node))

    def status(self) -> dict[str, Any]:
        try:
            return dict(self.obj.getStatus())
        except RuntimeError:   # its dicts changed while we read them: try once more
            return dict(self.obj.getStatus())

    def _other_nodes(self) -> list[Any]:
        return other_nodes(self.obj)

    def members(self) -> list[str]:
        """Raft addresses of every member as this node knows them (itself included), sorted."""
        return sorted({self.cfg.raft_addr, *(str(getattr(n, "address", n)) for n in self._other_nodes())})

    # -- membership (pysyncobj dynamic membership; one change at a time, on the leader) --

    def add_node(self, raft_address: str, callback: Callable[[Any, int], None]) -> None:
        """Add a member; `callback(result, fail_code)` once the change is committed (or refused)."""
        self.obj.addNodeToCluster(raft_address, callback=callback)

    def remove_node(self, raft_address: str, callback: Callable[[Any, int], None]) -> None:
        self.obj.removeNodeFromCluster(raft_address, callback=callback)

    def transfer_leadership(self, callback: Callable[[Any, int], None]) -> None:
        """Hand leadership to the most caught-up connected follower (best effort)."""
        self.obj.transferLeadership(None, callback=callback)

    def match_index(self, raft_address: str) -> int:
        return int(self.status().get(f"match_idx_server_{raft_address}", 0) or 0)

    def finish_join(self) -> bool:
        """Leave the joining mode once caught up with a leader (True when it just did)."""
        if not self.joining or self.retired:
            return False
        st = self.status()
        if not membership.join_done(st.get("leader") is not None, int(st.get("last_applied", 0) or 0),
                                    st.get("leader_commit_idx")):
            return False
        self.conf.raftMinTimeout = self.cfg.raft_min_timeout_s
        self.conf.raftMaxTimeout = self.cfg.raft_max_timeout_s
        replace_file(self.joined_marker, "joined\n")
        self.joining = False
        log.info("joined the controller group; takes part in elections from now on %s",
                 {"members": self.members()})
        return True

    def retire(self) -> None:
        """This node was removed from the group: stop taking part in Raft for good."""
        if not self.retired:
            self.retired = True
            self.obj.destroy()

    def peer_connected(self, raft_address: str) -> bool:
        for node in self._other_nodes():
            if str(getattr(node, "address", node)) == raft_address:
                return bool(self.obj.isNodeConnected(node))
        return False

    def majority_contact_age(self) -> float:
        """Seconds since this node last heard from a majority (its own vote included); 0 alone.
        pysyncobj applies its leader fallback only on its own tick; a node just resumed from a
        pause still says it leads until then, so the server checks this on demand."""
        others = len(other_nodes(self.obj))
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
        if not self.retired:
            self.obj.destroy()


def other_nodes(obj: Any) -> list[Any]:
    """The SyncObj's other members (pysyncobj changes the set on its own thread: retry a copy)."""
    for _ in range(5):
        try:
            return list(getattr(obj, "otherNodes", ()))
        except RuntimeError:
            continue
    return []


def fail_name(code: int) -> str:
    return FAIL_NAMES.get(code, str(code))
