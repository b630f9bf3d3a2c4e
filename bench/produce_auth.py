"""`orbitmq bench produce --auth`: signed (auth_enabled broker, ACL checked) against unsigned
sends, side by side in one run.

Starts a controller (users and ACLs), a name server and two brokers of two sets: `broker-a` with
`auth_enabled` and `broker-plain` without. The same Producer code sends 1 message per call (sync)
and `--batch` messages per call, alternating plain and signed phases (and their order) for
`--rounds` rounds; each figure is the median over rounds. Both brokers serve the framed protocol and
both producers use it (a signed connection signs its HELLO once), unless `--protocol grpc` (every
call signed). `auth_vs_plain_sync` = signed sync
sends/s over plain ones; because throughput on a shared machine moves with everyone else's load,
each phase also gives CPU microseconds per message (this process + that mode's broker, from /proc)
and `auth_vs_plain_cpu_*` = plain CPU per message over signed CPU per message.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

USER = ("bench", "bench-secret-123")


def run(args) -> dict:
    """`--auth`: signed vs unsigned; `--tls --auth`: TLS and signed together vs plaintext unsigned
    (`secure_vs_plain`, bench/produce_secure.py)."""
    if getattr(args, "tls", False):
        from orbitmq.bench.produce_secure import run_secure
        return run_secure(args)
    return run_auth(args)


def figures(res: dict[str, list[float]], cpu: dict[str, list[float]],
            names: tuple[str, ...]) -> tuple[dict, dict[str, float], dict[str, float]]:
    """Per mode: median sync sends/s, batch msgs/s and CPU per message over the rounds of `_compare`
    (as JSON fields), plus the medians themselves for the caller's ratios."""
    med = {k: statistics.median(v) for k, v in res.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    out: dict = {"rounds_sync_per_s": {k: [round(x) for x in v] for k, v in res.items() if k.endswith("sync")}}
    for n in names:
        out.update({f"{n}_sync_send_per_s": round(med[f"{n}_sync"]), f"{n}_batch_msgs_per_s": round(med[f"{n}_batch"]),
                    f"{n}_sync_cpu_us_per_msg": round(mcpu[f"{n}_sync"], 1),
                    f"{n}_batch_cpu_us_per_msg": round(mcpu[f"{n}_batch"], 1)})
    return out, med, mcpu


def _compare(modes: list, body: bytes, args, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each mode (name, producer, topic, broker pid) sends one message per call, then --batch per
    call, for --seconds each; modes alternate (and swap order) over `rounds`. Returns msgs/s and CPU
    microseconds per message, per "NAME_sync" / "NAME_batch", one value per round."""
    from orbitmq.client import Message

    res: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for r in range(rounds):
        for name, p, topic, pid in (modes if r % 2 == 0 else modes[::-1]):
            msg = Message(topic, body)

            def one(p=p, msg=msg) -> None:
                msg.msg_id = ""
                p.send(msg)
            batch = [Message(topic, body) for _ in range(args.batch)]

            def many(p=p, batch=batch) -> None:
                for m in batch:
                    m.msg_id = ""
                p.send_batch(batch)
            for kind, fn, per in (("sync", one, 1), ("batch", many, args.batch)):
                rate_, us = _phase(fn, per, args.seconds, args.messages, pid)
                res.setdefault(f"{name}_{kind}", []).append(rate_)
                cpu.setdefault(f"{name}_{kind}", []).append(us)
    return res, cpu


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


def _phase(fn: Callable[[], None], per_call: int, seconds: float, limit: int, broker_pid: int) -> tuple[float, float]:
    """(messages/s, CPU microseconds per message of this process + the broker) of `fn` run for
    `seconds` or `limit` messages after a short warm-up. CPU per message moves far less than
    throughput with the load of other processes on a shared machine."""
    for _ in range(3):
        fn()
    n = 0
    b0, c0, t0 = _proc_cpu_s(broker_pid), time.process_time(), time.perf_counter()
    while n < limit and time.perf_counter() - t0 < seconds:
        fn()
        n += per_call
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0 + _proc_cpu_s(broker_pid) - b0
    return n / dt, cpu / n * 1e6


def run_auth(args) -> dict:
    from orbitmq.bench.auth_cluster import ADMIN, AuthCluster
    from orbitmq.client import Admin, Message, Producer
    from orbitmq.client import errors as cerr
    from orbitmq.common import proc

    root = Path(tempfile.mkdtemp(prefix="orbitmq-bench-auth-"))
    framed = getattr(args, "protocol", "auto") != "grpc"
    cl = AuthCluster(root, plain_broker=True, framed=framed)
    rounds = max(1, getattr(args, "rounds", 3))
    out: dict = {"size": args.size, "batch": args.batch, "rounds": rounds, "seconds_per_phase": args.seconds,
                 "protocol": "framed" if framed else "grpc"}
    try:
        cl.start()
        cl.admin_ok("user", "create", USER[0], "--secret", USER[1])
        cl.admin_ok("acl", "set", USER[0], "--resource", "TOPIC:BenchAuth", "--actions", "pub")
        with Admin(cl.namesrv, credentials=ADMIN) as a:
            proc.wait_until(lambda: len(a.cluster_list()) >= 2, 60, what="both brokers registered")
            a.create_topic("BenchAuth", args.queues, broker_sets=["broker-a"])
            a.create_topic("BenchPlain", args.queues, broker_sets=["broker-plain"])
        body = b"x" * args.size
        proto = "auto" if framed else "grpc"
        with Producer(cl.namesrv, protocol=proto) as plain, \
                Producer(cl.namesrv, credentials=USER, protocol=proto) as signed:
            def allowed() -> bool:
                try:
                    signed.send(Message("BenchAuth", body))
                    return True
                except cerr.ForbiddenError:
                    return False
            proc.wait_until(allowed, 30, 0.3, "the bench user may send")
            pids = {c.name: c.pid for c in cl.children}
            res, cpu = _compare([("plain", plain, "BenchPlain", pids["broker-plain"]),
                                 ("auth", signed, "BenchAuth", pids["broker"])], body, args, rounds)
        fig, med, mcpu = figures(res, cpu, ("plain", "auth"))
        out.update(fig)
        out.update({
            "auth_vs_plain_sync": round(med["auth_sync"] / med["plain_sync"], 3),
            "auth_vs_plain_batch": round(med["auth_batch"] / med["plain_batch"], 3),
            # plain CPU per message over signed CPU per message (1.0: signing and checking cost nothing)
            "auth_vs_plain_cpu_sync": round(mcpu["plain_sync"] / mcpu["auth_sync"], 3),
            "auth_vs_plain_cpu_batch": round(mcpu["plain_batch"] / mcpu["auth_batch"], 3),
        })
        return out
    finally:
        cl.stop()
        shutil.rmtree(root, ignore_errors=True)
