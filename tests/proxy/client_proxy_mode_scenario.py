"""Run by tests/proxy/test_client_proxy_mode.py in its own process (OrbitMQ's apache.rocketmq.v2 code
cannot share a process with the official client the other proxy tests import).

argv: ENDPOINT. Prints one JSON line with what happened."""

from __future__ import annotations

import json
import sys
import threading
import time

from orbitmq.client import ConsumeStatus, Message, errors
from orbitmq.client.proxy_mode import ProxyProducer, ProxyPushConsumer


def main() -> None:
    ep = sys.argv[1]
    out: dict = {}
    with ProxyProducer(ep) as p:
        receipts = [p.send(Message("ours", f"m{i}".encode(), tags="t", keys=[f"k{i}"], properties={"i": str(i)}))
                    for i in range(20)]
        receipts += p.send_batch([Message("ours", f"b{i}".encode()) for i in range(5)])
        receipts.append(p.send_async(Message("ours", b"async")).result(30))
        out["receipts"] = len({r.msg_id for r in receipts})
        for i in range(6):
            p.send(Message("ours", f"f{i}".encode()), selector=object(), arg="order-7")
        try:
            p.send(Message("ours", b""))
        except errors.OrbitError as e:
            out["empty_body_error"] = e.code
        try:
            p.send(Message("bad topic!", b"x"))
        except errors.OrbitError as e:
            out["bad_topic_error"] = e.code
    seen: list[tuple[bytes, int, str]] = []
    lock = threading.Lock()

    def listener(msgs):
        with lock:
            for m in msgs:
                seen.append((m.body, m.reconsume_times, m.properties.get("i", "")))
        if any(m.body == b"m3" and m.reconsume_times == 0 for m in msgs):
            return ConsumeStatus.RECONSUME_LATER
        return ConsumeStatus.SUCCESS

    c = ProxyPushConsumer("ours-g", ep, threads=2)
    c.subscribe("ours")
    c.register_listener(listener)
    c.start()
    want = {f"m{i}".encode() for i in range(20)} | {f"b{i}".encode() for i in range(5)} | {b"async"} | \
        {f"f{i}".encode() for i in range(6)}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            if {b for b, _, _ in seen} >= want and (b"m3", 1, "3") in seen:
                break
        time.sleep(0.2)
    c.shutdown()
    with lock:
        out["bodies"] = sorted({b.decode() for b, _, _ in seen})
        out["m3_redelivered"] = (b"m3", 1, "3") in seen
        out["fifo_order"] = [b.decode() for b, _, _ in seen if b.startswith(b"f")]
        out["props_ok"] = all(p == b.decode()[1:] for b, _, p in seen if b.startswith(b"m"))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
