"""`orbitmq bench produce --tls --auth`: a fully secured path against a plaintext one, side by side.

Secure: a controller (users and ACLs), a name server and a broker that serve TLS (throwaway CA),
the broker with `auth_enabled`, and a Producer that dials TLS and signs every request as a user
with `pub` on the topic. Plain: a name server and a broker without TLS or auth, and a Producer
without either. Both send the same 1-message (sync) and --batch-message calls for --seconds,
alternating modes (and their order) over --rounds; figures are medians over rounds.
`secure_vs_plain` = secure sync sends/s over plain ones (target >= 0.8); `secure_vs_plain_batch`
the same for batches; `secure_vs_plain_cpu*` = plain CPU per message over secure CPU per message
(this process + that mode's broker), which moves far less with other processes' load.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from orbitmq.bench.produce_auth import USER, _compare, figures


def run_secure(args) -> dict:
    from orbitmq.bench.auth_cluster import ADMIN, AuthCluster
    from orbitmq.bench.harness import BenchCluster
    from orbitmq.client import Admin, Message, Producer
    from orbitmq.client import errors as cerr
    from orbitmq.common import proc
    from orbitmq.common.tls import TlsConfig

    root = Path(tempfile.mkdtemp(prefix="orbitmq-bench-secure-"))
    cl = AuthCluster(root, tls=True)
    rounds = max(1, getattr(args, "rounds", 3))
    out: dict = {"size": args.size, "batch": args.batch, "rounds": rounds, "seconds_per_phase": args.seconds,
                 "secure": "TLS on every link + signed requests with ACL checks", "plain": "plaintext, unsigned"}
    try:
        with BenchCluster(args.flush_mode) as bc:
            cl.start()
            tls = TlsConfig(ca_file=cl.ca)
            cl.admin_ok("user", "create", USER[0], "--secret", USER[1])
            cl.admin_ok("acl", "set", USER[0], "--resource", "TOPIC:BenchSecure", "--actions", "pub")
            with Admin(cl.namesrv, credentials=ADMIN, tls=tls) as a:
                proc.wait_until(lambda: a.cluster_list(), 60, what="the secure broker registered")
                a.create_topic("BenchSecure", args.queues)
            bc.create_topic("BenchPlain", args.queues)
            body = b"x" * args.size
            with Producer(bc.namesrv, tls=False) as plain, \
                    Producer(cl.namesrv, credentials=USER, tls=tls) as secure:
                def allowed() -> bool:
                    try:
                        secure.send(Message("BenchSecure", body))
                        return True
                    except cerr.ForbiddenError:
                        return False
                proc.wait_until(allowed, 30, 0.3, "the bench user may send")
                plain_pid = bc.broker_child.pid
                secure_pid = next(c.pid for c in cl.children if c.name == "broker")
                res, cpu = _compare([("plain", plain, "BenchPlain", plain_pid),
                                     ("secure", secure, "BenchSecure", secure_pid)], body, args, rounds)
    finally:
        cl.stop()
        shutil.rmtree(root, ignore_errors=True)
    fig, med, mcpu = figures(res, cpu, ("plain", "secure"))
    out.update(fig)
    out.update({
        "secure_vs_plain": round(med["secure_sync"] / med["plain_sync"], 3),
        "secure_vs_plain_batch": round(med["secure_batch"] / med["plain_batch"], 3),
        "secure_vs_plain_cpu": round(mcpu["plain_sync"] / mcpu["secure_sync"], 3),
        "secure_vs_plain_cpu_batch": round(mcpu["plain_batch"] / mcpu["secure_batch"], 3),
    })
    return out
