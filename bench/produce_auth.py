"""`orbitmq bench produce --auth`: signed (auth_enabled broker, ACL checked) against unsigned
sends, side by side in one run.

Starts a controller (users and ACLs), a name server and two brokers of two sets: `broker-a` with
`auth_enabled` and `broker-plain` without. The same Producer code sends 1 message per call (sync)
and `--batch` messages per call, alternating plain and signed phases for `--rounds` rounds; each
figure is the median over rounds. `auth_vs_plain_sync` = signed sync sends/s over plain ones.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

from orbitmq.bench.harness import rate

USER = ("bench", "bench-secret-123")


def run(args) -> dict:
    """`--auth`; with `--tls` too (bench/produce_tls.py, when present), the TLS comparison first and
    then this one, in one JSON object (`tls`: its figures)."""
    out: dict = {}
    if getattr(args, "tls", False):
        from orbitmq.bench.produce_tls import run_tls
        out["tls"] = run_tls(args)
    out.update(run_auth(args))
    return out


def run_auth(args) -> dict:
    from orbitmq.bench.auth_cluster import ADMIN, AuthCluster
    from orbitmq.client import Admin, Message, Producer
    from orbitmq.client import errors as cerr
    from orbitmq.common import proc

    root = Path(tempfile.mkdtemp(prefix="orbitmq-bench-auth-"))
    cl = AuthCluster(root, plain_broker=True)
    rounds = max(1, getattr(args, "rounds", 3))
    out: dict = {"size": args.size, "batch": args.batch, "rounds": rounds, "seconds_per_phase": args.seconds}
    try:
        cl.start()
        cl.admin_ok("user", "create", USER[0], "--secret", USER[1])
        cl.admin_ok("acl", "set", USER[0], "--resource", "TOPIC:BenchAuth", "--actions", "pub")
        with Admin(cl.namesrv, credentials=ADMIN) as a:
            proc.wait_until(lambda: len(a.cluster_list()) >= 2, 60, what="both brokers registered")
            a.create_topic("BenchAuth", args.queues, broker_sets=["broker-a"])
            a.create_topic("BenchPlain", args.queues, broker_sets=["broker-plain"])
        body = b"x" * args.size
        with Producer(cl.namesrv) as plain, Producer(cl.namesrv, credentials=USER) as signed:
            def allowed() -> bool:
                try:
                    signed.send(Message("BenchAuth", body))
                    return True
                except cerr.ForbiddenError:
                    return False
            proc.wait_until(allowed, 30, 0.3, "the bench user may send")
            res: dict[str, list[float]] = {k: [] for k in ("plain_sync", "auth_sync", "plain_batch", "auth_batch")}
            for _ in range(rounds):
                for name, p, topic in (("plain", plain, "BenchPlain"), ("auth", signed, "BenchAuth")):
                    msg = Message(topic, body)

                    def one(p=p, msg=msg) -> None:
                        msg.msg_id = ""
                        p.send(msg)
                    res[f"{name}_sync"].append(rate(one, args.seconds, args.messages))
                    batch = [Message(topic, body) for _ in range(args.batch)]

                    def many(p=p, batch=batch) -> None:
                        for m in batch:
                            m.msg_id = ""
                        p.send_batch(batch)
                    res[f"{name}_batch"].append(rate(many, args.seconds, args.messages, per_call=args.batch, warmup=3))
        med = {k: statistics.median(v) for k, v in res.items()}
        out.update({
            "plain_sync_send_per_s": round(med["plain_sync"]), "auth_sync_send_per_s": round(med["auth_sync"]),
            "auth_vs_plain_sync": round(med["auth_sync"] / med["plain_sync"], 3),
            "plain_batch_msgs_per_s": round(med["plain_batch"]), "auth_batch_msgs_per_s": round(med["auth_batch"]),
            "auth_vs_plain_batch": round(med["auth_batch"] / med["plain_batch"], 3),
            "rounds_sync_per_s": {k: [round(x) for x in v] for k, v in res.items() if k.endswith("sync")},
        })
        return out
    finally:
        cl.stop()
        shutil.rmtree(root, ignore_errors=True)
