"""Runs a nemesis schedule against a live `ChaosCluster`: resolves each fault's roles to processes
(the master, a follower, the controller leader...), injects it, holds it, heals it, and records
what happened (`FaultWindow`s and timeline events, wall-clock times).

The thin shell over the pure schedule (`nemesis.py`); it decides nothing about the system under
test. Healing order: network faults first, then paused processes resumed, then killed ones
restarted. Before each fault it waits (bounded) until the cluster is whole again: a controller
leader, a master and a full sync-state-set.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from orbitmq.chaos.checker import FaultWindow
from orbitmq.chaos.nemesis import Fault

log = logging.getLogger("orbitmq.chaos.nemesis")
CONTROLLER = re.compile(r"^c\d+$")


class Skip(Exception):
    """The fault cannot be injected now (no master, no follower...)."""


class NemesisDriver:
    """`run(faults, t0, stop)` injects them in order; `heal_all()` undoes whatever is still applied."""

    def __init__(self, cluster: Any, broker_set: str, *, replicas: int = 3,
                 filler: Callable[[dict], Callable[[], None]] | None = None,
                 say: Callable[[str], None] = lambda _s: None, wall: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.broker_set = broker_set
        self.replicas = replicas
        self.filler = filler            # expiry_under_load: starts filler load, returns its stop()
        self.say = say
        self.wall = wall
        self.windows: list[FaultWindow] = []
        self.events: list[dict] = []    # {"t", "event": inject|heal|skip, "fault", "targets", ...}
        self.injected = 0
        self._killed: list[str] = []
        self._paused: list[str] = []
        self._network = False
        self._stops: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    # ---- roles --------------------------------------------------------------------------------------

    def _controllers(self) -> list[str]:
        return [n for n in self.cluster.node_names() if CONTROLLER.match(n)]

    def _replicas_of_set(self) -> list[str]:
        prefix = f"{self.broker_set}-"
        return [n for n in self.cluster.node_names() if n.startswith(prefix)]

    def _master(self) -> str:
        m = self.cluster.master_of(self.broker_set)
        if not m:
            raise Skip("no master")
        return m

    def _pick(self, names: list[str], index: int, what: str) -> str:
        if not names:
            raise Skip(f"no {what}")
        return sorted(names)[index % len(names)]

    def _leader(self) -> str:
        leader = self.cluster.controller_leader()
        if not leader:
            raise Skip("no controller leader")
        return leader

    # ---- inject / heal --------------------------------------------------------------------------------

    def _plan(self, fault: Fault) -> list[tuple[str, Callable[[], None], list[str]]]:
        """Resolve every kind of the fault to (kind, action, targets) before touching anything."""
        p = fault.params
        c = self.cluster
        steps: list[tuple[str, Callable[[], None], list[str]]] = []
        for kind in fault.kinds:
            if kind == "kill_master":
                m = self._master()
                steps.append((kind, lambda m=m: self._kill(m), [m]))
            elif kind == "pause_master":
                m = self._master()
                steps.append((kind, lambda m=m: self._pause(m), [m]))
            elif kind == "isolate_master_controllers":
                m, ctl = self._master(), self._controllers()
                steps.append((kind, lambda m=m, ctl=ctl: self._partition([m], ctl), [m]))
            elif kind == "isolate_master_followers":
                m = self._master()
                others = [n for n in self._replicas_of_set() if n != m]
                steps.append((kind, lambda m=m, o=others: self._partition([m], o), [m]))
            elif kind in ("cut_follower", "slow_replication", "flap_link"):
                f = self._pick(c.followers_of(self.broker_set), p.get("follower", 0), "follower")
                m = self._master()
                if kind == "cut_follower":
                    rest = [n for n in c.node_names() if n != f]
                    steps.append((kind, lambda f=f, r=rest: self._partition([f], r), [f]))
                elif kind == "slow_replication":
                    steps.append((kind, lambda f=f, m=m: self._slow(f, m, p), [f, m]))
                else:
                    steps.append((kind, lambda f=f, m=m: self._flap(f, m), [f, m]))
            elif kind == "kill_controller_leader":
                ld = self._leader()
                steps.append((kind, lambda ld=ld: self._kill(ld), [ld]))
            elif kind == "partition_controllers":
                ld = self._leader()
                rest = [n for n in self._controllers() if n != ld]
                steps.append((kind, lambda ld=ld, r=rest: self._partition([ld], r), [ld]))
            elif kind == "kill_learner":
                ln = self._pick(c.learners_of(self.broker_set), p.get("learner", 0), "learner")
                steps.append((kind, lambda ln=ln: self._kill(ln), [ln]))
            elif kind == "expiry_under_load":
                if self.filler is None:
                    raise Skip("expiry_under_load needs a filler load")
                steps.append((kind, lambda: self._stops.append(self.filler(p)), []))
            else:
                raise Skip(f"unknown kind {kind}")
        return steps

    def _kill(self, node: str) -> None:
        self.cluster.kill(node)
        self._killed.append(node)

    def _pause(self, node: str) -> None:
        self.cluster.pause(node)
        self._paused.append(node)

    def _partition(self, a: list[str], b: list[str]) -> None:
        self._network = True
        self.cluster.partition(a, b)

    def _slow(self, src: str, dst: str, p: dict) -> None:
        self._network = True
        self.cluster.slow_link(src, dst, latency_ms=int(p.get("latency_ms", 100)),
                               jitter_ms=int(p.get("jitter_ms", 0)), rate_kbps=int(p.get("rate_kbps", 0)))

    def _flap(self, src: str, dst: str) -> None:
        self._network = True
        self.cluster.flap_link(src, dst)

    def inject(self, fault: Fault) -> FaultWindow | None:
        """Inject every kind of `fault` now; None (and a 'skip' event) if a role has nobody."""
        try:
            steps = self._plan(fault)
        except Skip as e:
            self.events.append({"t": self.wall(), "event": "skip", "fault": fault.name, "why": str(e)})
            self.say(f"nemesis: skipped #{fault.index} {fault.name}: {e}")
            return None
        targets: list[str] = []
        for kind, action, who in steps:
            action()
            targets.extend(who)
            self.events.append({"t": self.wall(), "event": "inject", "fault": kind, "targets": who})
        start = self.wall()        # the fault is fully in place from here (a kill has returned, toxics are set)
        self.injected += 1
        self.say(f"nemesis: #{fault.index} {fault.name} on {', '.join(targets) or '-'}")
        return FaultWindow(fault.name, start, start, tuple(targets))

    def heal_all(self) -> None:
        """Undo everything still applied: network, paused, killed, filler load."""
        with self._lock:
            if self._network:
                self.cluster.heal()
                self._network = False
            for n in self._paused:
                self.cluster.resume(n)
            for n in self._killed:
                try:
                    self.cluster.restart(n)
                except Exception:  # noqa: BLE001 - keep healing the others
                    log.exception("restart of %s failed", n)
            for stop in self._stops:
                stop()
            healed = [*self._paused, *self._killed]
            self._paused, self._killed, self._stops = [], [], []
        self.events.append({"t": self.wall(), "event": "heal", "targets": healed})

    def healthy(self) -> bool:
        """A controller leader, a master, and every electable replica in its sync-state-set."""
        try:
            st = self.cluster.status()
            s = st.get("sets", {}).get(self.broker_set, {})
            return bool(st.get("controller_leader")) and bool(s.get("master")) and len(s.get("sss", ())) >= self.replicas
        except Exception:  # noqa: BLE001 - a status read can fail mid-fault
            return False

    def wait_healthy(self, timeout: float, stop: threading.Event | None = None) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not (stop and stop.is_set()):
            if self.healthy():
                return True
            time.sleep(0.5)
        return False

    # ---- the schedule ---------------------------------------------------------------------------------

    def run(self, faults: list[Fault], t0: float, stop: threading.Event, *, end: float,
            recover_timeout: float = 45.0) -> None:
        """Inject `faults` at `t0 + at_s` (monotonic), never before the cluster is whole again and
        never after `end`; each is healed after its hold time."""
        for f in faults:
            at = t0 + f.at_s
            while time.monotonic() < at and not stop.is_set():
                stop.wait(min(0.5, at - time.monotonic()))
            if stop.is_set() or time.monotonic() + f.hold_s > end:
                break
            if not self.wait_healthy(recover_timeout, stop):
                self.say(f"nemesis: cluster not whole after {recover_timeout:.0f} s; injecting #{f.index} anyway")
            if stop.is_set() or time.monotonic() + f.hold_s > end:
                break
            try:
                w = self.inject(f)
            except Exception as e:  # noqa: BLE001 - a fault that half-applied is healed, the run goes on
                log.exception("injecting #%d %s failed", f.index, f.name)
                self.say(f"nemesis: #{f.index} {f.name} failed to inject: {e}")
                self.heal_all()
                continue
            if w is None:
                continue
            stop.wait(f.hold_s)
            self.heal_all()
            self.windows.append(FaultWindow(w.kind, w.start, self.wall(), w.targets))
