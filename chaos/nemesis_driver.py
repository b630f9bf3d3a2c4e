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
from orbitmq.chaos.nemesis import Action, Fault, Skip, View, resolve

log = logging.getLogger("orbitmq.chaos.nemesis")
CONTROLLER = re.compile(r"^c\d+$")


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

    def view(self) -> View:
        """Who is who right now (names from the cluster; controllers are c1, c2, ...)."""
        c = self.cluster
        nodes = tuple(c.node_names())
        prefix = f"{self.broker_set}-"
        return View(master=c.master_of(self.broker_set), followers=tuple(c.followers_of(self.broker_set)),
                    learners=tuple(c.learners_of(self.broker_set)),
                    replicas=tuple(n for n in nodes if n.startswith(prefix)),
                    controllers=tuple(n for n in nodes if CONTROLLER.match(n)), leader=c.controller_leader(),
                    nodes=nodes)

    # ---- inject / heal --------------------------------------------------------------------------------

    def _apply(self, a: Action) -> None:
        if a.op == "kill":
            self._kill(a.a[0])
        elif a.op == "pause":
            self._pause(a.a[0])
        elif a.op == "partition":
            self._partition(list(a.a), list(a.b))
        elif a.op == "slow":
            self._slow(a.a[0], a.b[0], a.params)
        elif a.op == "flap":
            self._flap(a.a[0], a.b[0])
        elif a.op == "filler":
            if self.filler is None:
                raise Skip("expiry_under_load needs a filler load")
            self._stops.append(self.filler(a.params))
        else:
            raise ValueError(f"unknown action {a.op}")

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
            steps = resolve(fault, self.view())
            if any(a.op == "filler" for a in steps) and self.filler is None:
                raise Skip("expiry_under_load needs a filler load")
        except Skip as e:
            self.events.append({"t": self.wall(), "event": "skip", "fault": fault.name, "why": str(e)})
            self.say(f"nemesis: skipped #{fault.index} {fault.name}: {e}")
            return None
        targets: list[str] = []
        for a in steps:
            self._apply(a)
            targets.extend(a.targets)
            self.events.append({"t": self.wall(), "event": "inject", "fault": a.kind, "op": a.op,
                                "targets": a.targets, "other_side": list(a.b)})
        start = self.wall()        # the fault is fully in place from here (a kill has returned, toxics are set)
        self.injected += 1
        self.say(f"nemesis: #{fault.index} {fault.name} on {', '.join(targets) or '-'}")
        return FaultWindow(fault.name, start, start, tuple(targets))

    def heal_all(self) -> None:
        """Undo everything still applied: network, paused, killed, filler load."""
        with self._lock:
            if self._network:
                self._try("heal the network", self.cluster.heal)
                self._network = False
            for n in self._paused:
                self._try(f"resume {n}", self.cluster.resume, n)
            for n in self._killed:
                self._try(f"restart {n}", self.cluster.restart, n)
            for stop in self._stops:
                self._try("stop the filler load", stop)
            healed = [*self._paused, *self._killed]
            self._paused, self._killed, self._stops = [], [], []
        self.events.append({"t": self.wall(), "event": "heal", "targets": healed})

    def _try(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        """One healing step; a failure is logged and said, and the other steps still run."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            log.exception("could not %s", what)
            self.say(f"nemesis: could not {what}: {e}")
            self.events.append({"t": self.wall(), "event": "heal-failed", "what": what, "why": str(e)})

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
            recover_timeout: float = 20.0) -> None:
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
