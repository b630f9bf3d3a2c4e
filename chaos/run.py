"""One chaos run end to end: start a `ChaosCluster`, run the workload, let the seeded nemesis
inject its schedule for `duration_s`, heal, settle, read everything back, check, and write the
report, the history, the timeline and its picture into the run directory.

The shell around the pure parts (schedule, checker, report, timeline): it owns threads, the
cluster's lifetime (always `down()` at the end) and the live status line on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from orbitmq.chaos import checker, nemesis, report, timeline
from orbitmq.chaos.nemesis_driver import NemesisDriver
from orbitmq.chaos.workload import Workload, WorkloadConfig, read_back

log = logging.getLogger("orbitmq.chaos.run")
BROKER_SET = "broker-a"
TOPIC = "ChaosTopic"
FILLER_TOPIC = "ChaosFiller"
# small segments and short retention, for runs with the expiry_under_load fault
EXPIRY_STORE = {"segment_size": 256 * 1024, "retention_hours": 90 / 3600, "expiry_interval_s": 2.0}


@dataclass
class RunOptions:
    duration_s: float = 120.0
    seed: int = 1
    run_dir: str = ""
    kinds: list[str] = field(default_factory=lambda: list(nemesis.DEFAULT_KINDS))
    combo_ratio: float = 0.25
    toxiproxy_url: str | None = None
    rate: float = 120.0
    producers: int = 3
    consumers: int = 2
    settle_s: float = 10.0
    warmup_s: float = 5.0
    replicas: int = 3
    learners: int = 1
    expiry: bool = False          # small segments + short retention, and the expiry_under_load fault


class StatusLine:
    """One refreshed line on a terminal (a line every `every_s` otherwise): elapsed, sends/s,
    faults so far, current master and epoch."""

    def __init__(self, out: TextIO, text: Callable[[], str], every_s: float = 10.0) -> None:
        self.out, self.text, self.every_s = out, text, every_s
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, name="chaos-status", daemon=True)

    def start(self) -> None:
        self._t.start()

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.wait(1.0):
            try:
                line = self.text()
            except Exception as e:  # noqa: BLE001
                line = f"(status unavailable: {e})"
            if self.tty:
                self.out.write("\r" + line[:200] + "\x1b[K")
                self.out.flush()
            elif time.monotonic() - last >= self.every_s:
                last = time.monotonic()
                print(line, file=self.out, flush=True)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)
        if self.tty:
            self.out.write("\r\x1b[K")
            self.out.flush()


def _history(cluster: Any) -> list[checker.MasterChange]:
    out = []
    for h in cluster.controller_history():
        t = h.get("time_ms", 0) / 1000.0 if "time_ms" in h else float(h.get("time", 0.0))
        out.append(checker.MasterChange(h["broker_set"], int(h["epoch"]), int(h["master_id"]), t))
    return out


def broker_ids(addrs: set[str], timeout: float = 3.0) -> dict[str, int]:
    """The broker id behind each address (asked from the broker itself); unreachable ones are left out."""
    import grpc

    from orbitmq.common.tls_grpc import channel as tls_channel
    from orbitmq.protos import broker_pb2, broker_pb2_grpc

    out = {}
    for addr in sorted(a for a in addrs if a):
        with tls_channel(addr) as ch:   # the process default: a secure cluster's CA
            try:
                st = broker_pb2_grpc.BrokerStub(ch).GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=timeout)
                out[addr] = int(st.broker_id)
            except grpc.RpcError:
                log.warning("broker at %s did not say its id", addr)
    return out


def _create_topic(namesrv: list[str], topic: str, queues: int, timeout: float = 60.0) -> None:
    from orbitmq.client import Admin, OrbitError

    end = time.monotonic() + timeout
    while True:
        try:
            with Admin(namesrv) as admin:
                admin.create_topic(topic, queues)
            return
        except OrbitError:
            if time.monotonic() > end:
                raise
            time.sleep(1.0)


def filler_load(namesrv: list[str]) -> Callable[[dict], Callable[[], None]]:
    """For expiry_under_load: a thread sending big messages to FILLER_TOPIC as fast as it is
    acknowledged (bounded), filling small segments so that expiry deletes them under load."""

    def start(params: dict) -> Callable[[], None]:
        stop = threading.Event()
        body = b"x" * (int(params.get("filler_kib", 16)) * 1024)

        def loop() -> None:
            from orbitmq.client import Message, OrbitError, Producer

            end = time.monotonic() + 120
            with Producer(namesrv, send_timeout_s=3.0, retries=0) as p:
                while not stop.is_set() and time.monotonic() < end:
                    try:
                        p.send(Message(FILLER_TOPIC, body))
                    except OrbitError:
                        stop.wait(0.1)

        t = threading.Thread(target=loop, name="chaos-filler", daemon=True)
        t.start()

        def halt() -> None:
            stop.set()
            t.join(10)

        return halt

    return start


def recheck(run_dir: str | Path) -> dict:
    """Run the checker again over RUN_DIR/history.json (no cluster needed); returns its figures."""
    h = json.loads((Path(run_dir) / "history.json").read_text())
    sends = [checker.Send(**x) for x in h["sends"]]
    live = [checker.Delivery(**x) for x in h["deliveries"]]
    back = [checker.Delivery(**x) for x in h["readback"]]
    changes = [checker.MasterChange(**x) for x in h["master_changes"]]
    faults = [checker.FaultWindow(x["kind"], x["start"], x["end"], tuple(x["targets"])) for x in h["faults"]]
    floors = {(k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1])): v for k, v in h["min_offsets"].items()}
    end = max((s.end for s in sends), default=0.0)
    return checker.check(sends, live, changes, faults, broker_ids=h.get("broker_ids", {}), min_offsets=floors,
                         run_end=end, readback=back)


def start_cluster(factory: Callable[..., Any], run_dir: Path, spec: Any, say: Callable[[str], None],
                  **kw: Any) -> Any:
    """`factory(run_dir, spec, **kw)`, once more in a fresh directory if that start fails (on a busy
    machine a port picked as free can be taken before a process binds it)."""
    try:
        return factory(run_dir, spec, **kw)
    except Exception as e:  # noqa: BLE001 - one retry, then the error goes up
        say(f"cluster start failed ({str(e).splitlines()[0][:300]}); trying once more in a fresh directory")
        retry = run_dir.with_name(run_dir.name + "-retry")
        spec.dir = str(retry)
        return factory(retry, spec, **kw)


def run(opts: RunOptions, *, err: TextIO = sys.stderr, cluster_factory: Callable[..., Any] | None = None) -> dict:
    """Run it; returns the report (also written to RUN_DIR/report.json)."""
    run_dir = Path(opts.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    kinds = list(opts.kinds) + (["expiry_under_load"] if opts.expiry and "expiry_under_load" not in opts.kinds else [])
    faults = nemesis.schedule(opts.seed, opts.duration_s, kinds, warmup_s=opts.warmup_s, combo_ratio=opts.combo_ratio)

    def say(text: str) -> None:
        print(text, file=err, flush=True)

    say(f"chaos: seed {opts.seed}, {opts.duration_s:.0f} s, {len(faults)} faults planned; run dir {run_dir}")
    say(nemesis.describe(faults))
    if cluster_factory is None:
        from orbitmq.chaos.cluster import ChaosCluster

        cluster_factory = ChaosCluster.up
    from orbitmq.common.local_cluster import ClusterSpec

    settings: dict[str, Any] = {"store": dict(EXPIRY_STORE)} if opts.expiry else {}   # the brokers' [store] table
    spec = ClusterSpec(dir=str(run_dir / "cluster"), broker_sets=[BROKER_SET], replicas=opts.replicas,
                       learners=opts.learners, broker_settings=settings)
    t_begin = time.monotonic()
    say("chaos: starting the cluster")
    cluster = start_cluster(cluster_factory, run_dir / "cluster", spec, say, chaos=True,
                            toxiproxy_url=opts.toxiproxy_url)
    status: StatusLine | None = None
    work: Workload | None = None
    stop = threading.Event()
    try:
        namesrv = list(cluster.namesrv_addrs)
        _create_topic(namesrv, TOPIC, 4)
        if opts.expiry:
            _create_topic(namesrv, FILLER_TOPIC, 2)
        work = Workload(WorkloadConfig(namesrv, TOPIC, producers=opts.producers, rate=opts.rate,
                                       consumers=opts.consumers,
                                       max_seconds=opts.duration_s + opts.settle_s + 600))
        work.start()
        driver = NemesisDriver(cluster, BROKER_SET, replicas=opts.replicas,
                               filler=filler_load(namesrv) if opts.expiry else None, say=say)
        t_first = time.monotonic()
        while work.first_ack_after(0) is None and time.monotonic() - t_first < 90:
            time.sleep(0.2)
        t0 = time.monotonic()
        wall0 = time.time()
        rate_state = {"t": t0, "n": 0}

        def status_text() -> str:
            sent, acked, delivered = work.counts()
            now = time.monotonic()
            rate = (acked - rate_state["n"]) / max(1e-3, now - rate_state["t"])
            rate_state.update(t=now, n=acked)
            st = cluster.status().get("sets", {}).get(BROKER_SET, {})
            return (f"[{now - t0:6.1f}s] {rate:6.1f} acks/s  sent {sent} acked {acked} delivered {delivered}  "
                    f"faults {driver.injected}/{len(faults)}  master {st.get('master') or '-'} "
                    f"epoch {st.get('epoch', '?')}")

        status = StatusLine(err, status_text)
        status.start()
        driver.run(faults, t0, stop, end=t0 + opts.duration_s)
        while time.monotonic() < t0 + opts.duration_s:
            time.sleep(0.2)
        driver.heal_all()
        say("\nchaos: healed; waiting for the cluster to be whole, then settling")
        whole = driver.wait_healthy(90)
        time.sleep(opts.settle_s)
        work.stop_producers()
        t_end_wall = time.time()
        status.stop()
        status = None
        acked = work.acked_ids()
        drained = work.drain(60)
        work.stop_consumers()
        say(f"chaos: producers stopped ({len(acked)} acknowledged); consumers "
            f"{'caught up' if drained else 'did not catch up'}; reading everything back")
        positions = {s.id: (s.broker_set, s.queue_id, s.queue_offset) for s in list(work.sends) if s.ok}
        back, floors = read_back(namesrv, TOPIC, positions, timeout=120)
        changes = _history(cluster)
        ids = broker_ids({s.broker for s in work.sends if s.ok})
        figures = checker.check(work.sends, work.deliveries, changes, driver.windows, broker_ids=ids,
                                min_offsets=floors, run_end=t_end_wall, readback=back)
        lines = timeline.timeline_lines(wall0, driver.windows, changes, driver.events)
        files = {"report": str(run_dir / "report.json"), "history": str(run_dir / "history.json"),
                 "timeline": str(run_dir / "timeline.txt"), "picture": str(run_dir / "timeline.png")}
        (run_dir / "timeline.txt").write_text("\n".join(lines) + "\n")
        timeline.plot_png(run_dir / "timeline.png", wall0, t_end_wall, work.sends, driver.windows, changes,
                          title=f"OrbitMQ chaos run, seed {opts.seed}: {len(driver.windows)} faults, "
                                f"lost_acked {figures['lost_acked']}")
        (run_dir / "history.json").write_text(json.dumps({
            "schedule": [f.to_dict() for f in faults], "faults": [asdict(w) for w in driver.windows],
            "events": driver.events, "master_changes": [asdict(c) for c in changes], "broker_ids": ids,
            "min_offsets": {f"{k[0]}/{k[1]}": v for k, v in floors.items()},
            "sends": [asdict(s) for s in work.sends], "deliveries": [asdict(d) for d in work.deliveries],
            "readback": [asdict(d) for d in back]}) + "\n")
        rep = report.build(figures, seed=opts.seed, duration_s=opts.duration_s, kinds=kinds, planned=len(faults),
                           windows=driver.windows, elapsed_s=time.monotonic() - t_begin, files=files,
                           extra={"send_errors": dict(work.errors), "cluster_whole_after_heal": whole,
                                  "consumers_caught_up": drained, "timeline": lines})
        (run_dir / "report.json").write_text(json.dumps(rep, indent=2, sort_keys=True) + "\n")
        return rep
    finally:
        stop.set()
        if status is not None:
            status.stop()
        if work is not None:
            work.stop_producers(5)
            work.stop_consumers(5)
        cluster.down()
