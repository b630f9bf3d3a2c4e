"""A broker's resident memory as its log grows, and how long it takes to restart.

Starts a name server and two brokers (real processes) side by side: one with the default
`resident_tail_bytes` (flushed pages older than the newest 64 MiB leave the process's memory) and
one that keeps every page mapped, as OrbitMQ did before. Writes --gb GiB of --size byte messages
to each through the client (batches of --batch), then reads VmRSS from /proc for both
(`rss_mib`, `rss_mib_all_mapped`). Then SIGKILLs the first broker and restarts it, timing until a
pull of its last message answers (`restart_after_kill_s`), and does the same after a clean stop
(`restart_after_stop_s`: the store's clean-shutdown checkpoint lets it skip the scan of the last
segment) and once more after a clean stop whose checkpoint was deleted before the restart
(`restart_after_stop_no_checkpoint_s`: the scan, side by side). Each restart also reports the
recovery path the broker took (`*_path`: checkpoint or scan, from its status), how long its store
took to open (`*_store_open_s`) and, of that, to find the end of the log (`*_log_end_s`: the scan
or the checkpoint's checks); `stop_s` is how long the clean stop took (SIGTERM to exit).
Bounded by --seconds per write phase. The store directories are deleted at the end (the process
logs stay in the temporary directory).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from orbitmq.broker.store.checkpoint_file import FILE_NAME as CHECKPOINT_FILE
from orbitmq.common import net, proc


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gb", type=float, default=2.0, help="GiB to write to each broker")
    p.add_argument("--size", type=int, default=64 * 1024, help="body bytes")
    p.add_argument("--batch", type=int, default=32, help="messages per send_batch call")
    p.add_argument("--seconds", type=float, default=300.0, help="time limit per write phase")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _write(namesrv: str, topic: str, total: int, size: int, batch: int, deadline: float) -> int:
    from orbitmq.client import Message, Producer

    body = b"x" * size
    written = 0
    with Producer(namesrv) as p:
        while written < total and time.monotonic() < deadline:
            p.send_batch([Message(topic, body) for _ in range(batch)])
            written += size * batch
    return written


def _restart(children: list, tmp: Path, name: str, argv: list[str], addr: str, topic: str) -> dict:
    """Start the broker again; seconds until it answers for `topic`, its recovery path and store open time."""
    import grpc

    from orbitmq.common import tls_grpc
    from orbitmq.protos import broker_pb2, broker_pb2_grpc

    t0 = time.monotonic()
    child = proc.start(name, argv, log_path=tmp / f"{name}.log")
    children.append(child)
    # reconnect at most 50 ms apart: gRPC's default backoff (1 s, 1.6 s, ...) while the broker is
    # still starting would be measured instead of the restart
    fast = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
            ("grpc.max_reconnect_backoff_ms", 50)]
    with tls_grpc.channel(addr, False, options=fast) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)

        def answered() -> bool:
            try:
                rng = stub.GetOffsetRange(broker_pb2.GetOffsetRangeRequest(topic=topic, queue_id=0), timeout=2)
                return rng.max_offset > 0
            except grpc.RpcError:
                return False
        proc.wait_until(answered, 120, what=f"{name} serving after restart", interval=0.02)
        took = time.monotonic() - t0
        st = dict(stub.GetBrokerStatus(broker_pb2.GetBrokerStatusRequest(), timeout=30).stats)
    return {"s": round(took, 2), "path": st.get("recovery", "?"), "store_open_s": float(st.get("recovery_s", -1)),
            "log_end_s": float(st.get("recovery_log_end_s", -1))}


def _stop(child: proc.Child) -> float:
    t0 = time.monotonic()
    child.stop(timeout=120)
    return round(time.monotonic() - t0, 2)


def _record(out: dict, key: str, r: dict) -> None:
    out[f"{key}_s"] = r["s"]
    out[f"{key}_path"] = r["path"]
    out[f"{key}_store_open_s"] = r["store_open_s"]
    out[f"{key}_log_end_s"] = r["log_end_s"]


def run(args: argparse.Namespace) -> dict:
    from orbitmq.client import Admin

    tmp = Path(tempfile.mkdtemp(prefix="orbitmq-bench-footprint-"))
    children: list[proc.Child] = []
    total = int(args.gb * (1 << 30))
    out: dict = {"gb": args.gb, "size": args.size}
    try:
        namesrv = f"127.0.0.1:{net.free_port()}"
        children.append(proc.start("namesrv", proc.orbitmq_argv("namesrv", "--listen", namesrv),
                                   log_path=tmp / "namesrv.log"))
        net.wait_for_port(namesrv, 30)
        brokers = {}
        mapped_cfg = tmp / "mapped.toml"
        mapped_cfg.write_text(f"[store]\nresident_tail_bytes = {1 << 62}\n")
        for bset, extra in (("released", []), ("mapped", ["--config", str(mapped_cfg)])):
            addr = f"127.0.0.1:{net.free_port()}"
            argv = proc.orbitmq_argv("broker", "--listen", addr, "--namesrv", namesrv, "--store-dir",
                                     str(tmp / bset), "--broker-set", bset, "--set", "log_level=WARNING", *extra)
            children.append(proc.start(bset, argv, log_path=tmp / f"{bset}.log"))
            net.wait_for_port(addr, 30)
            brokers[bset] = (addr, argv)
        with Admin(namesrv) as admin:
            proc.wait_until(lambda: len(admin.cluster_list()) == 2, 30, what="both brokers registered")
            for bset in brokers:
                admin.create_topic(f"Footprint-{bset}", 1, broker_sets=[bset])
        for bset in brokers:
            t0 = time.monotonic()
            n = _write(namesrv, f"Footprint-{bset}", total, args.size, args.batch, time.monotonic() + args.seconds)
            out[f"written_mib_{bset}"] = round(n / (1 << 20))
            out[f"write_mb_per_s_{bset}"] = round(n / 1e6 / (time.monotonic() - t0), 1)
        pids = {c.name: c.popen.pid for c in children}
        out["rss_mib"] = round(rss_mib(pids["released"]), 1)
        out["rss_mib_all_mapped"] = round(rss_mib(pids["mapped"]), 1)
        addr, argv = brokers["released"]
        victim = next(c for c in children if c.name == "released")
        victim.kill9()
        topic = "Footprint-released"
        _record(out, "restart_after_kill", _restart(children, tmp, "released-2", argv, addr, topic))
        out["stop_s"] = _stop(children[-1])
        _record(out, "restart_after_stop", _restart(children, tmp, "released-3", argv, addr, topic))
        _stop(children[-1])
        (tmp / "released" / CHECKPOINT_FILE).unlink(missing_ok=True)   # the same clean stop, no checkpoint
        _record(out, "restart_after_stop_no_checkpoint",
                _restart(children, tmp, "released-4", argv, addr, topic))
    finally:
        proc.stop_all(children)
        for bset in ("released", "mapped"):   # GiBs of segments; the logs stay in `tmp`
            shutil.rmtree(tmp / bset, ignore_errors=True)
    return out
