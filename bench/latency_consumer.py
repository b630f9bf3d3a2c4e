"""Hidden benchmark helper: a push consumer in its own process that records, per message, the
end-to-end latency (receive time - send time written in the body's first 8 bytes) and the
store-to-receive time (receive - store_timestamp), then writes them as JSON to --out.
Run as `python -m orbitmq.bench.latency_consumer ...`; prints READY once it owns its queues."""

from __future__ import annotations

import argparse
import json
import struct
import threading
import time

from orbitmq.client import PushConsumer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--namesrv", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", default="bench-latency")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--out", required=True)
    p.add_argument("--protocol", default="auto", choices=["auto", "grpc"])
    a = p.parse_args()
    e2e: list[float] = []
    store: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def listener(msgs):
        now = time.time()
        with lock:
            for m in msgs:
                (sent,) = struct.unpack_from("<d", m.body)
                e2e.append((now - sent) * 1000.0)
                store.append(now * 1000.0 - m.store_timestamp)
            if len(e2e) >= a.count:
                done.set()

    c = PushConsumer(a.group, a.namesrv, consume_from="last", long_poll_ms=5000, threads=2,
                     on_rebalance=lambda qs: print("READY", len(qs), flush=True), protocol=a.protocol)
    c.subscribe(a.topic)
    c.register_listener(listener)
    c.start()
    done.wait(a.seconds)
    c.shutdown()
    with open(a.out, "w") as f:
        json.dump({"e2e_ms": e2e, "store_to_receive_ms": store}, f)


if __name__ == "__main__":
    main()
