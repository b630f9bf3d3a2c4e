"""Child process of test_kill.py: appends forever from several threads; prints every flushed append.

Usage: python kill_writer.py STORE_DIR SEGMENT_SIZE FLUSH_MODE. Each line on stdout is
`ACK <physical_offset> <end_offset> <queue_id> <queue_offset> <body>` written only after
wait_flushed returned True for that append. Runs until killed (bounded at 10 minutes).
"""

from __future__ import annotations

import random
import sys
import threading
import time

from orbitmq.broker.store import Message, MessageStore, StoreConfig


def main() -> None:
    store_dir, seg, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = MessageStore(StoreConfig(store_dir=store_dir, segment_size=seg, flush_mode=mode, flush_interval_s=0.01,
                                 expiry_interval_s=0))
    s.open()
    out_lock = threading.Lock()
    deadline = time.monotonic() + 600

    def writer(t: int) -> None:
        rnd = random.Random(t)
        i = 0
        while time.monotonic() < deadline:
            n = rnd.randint(1, 8)
            batch = []
            for _ in range(n):
                body = f"w{t}-{i}-".encode() + b"z" * rnd.randint(0, 3000)
                batch.append(Message("Kill", body, queue_id=t, keys=[f"w{t}-{i}"]))
                i += 1
            rs = s.put_batch(batch) if n > 1 else [s.put(batch[0])]
            if s.wait_flushed(rs[-1].end_offset, 30):
                lines = "".join(f"ACK {r.physical_offset} {r.end_offset} {r.queue_id} {r.queue_offset} "
                                f"{m.body[:m.body.index(b'-', m.body.index(b'-') + 1) + 1].decode()}"
                                f"{len(m.body)}\n" for r, m in zip(rs, batch, strict=True))
                with out_lock:
                    sys.stdout.write(lines)
                    sys.stdout.flush()
            if rnd.random() < 0.1:
                s.commit_offset("G", "Kill", t, i)

    ts = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(4)]
    print("READY", flush=True)  # before any writer runs: the first line the parent reads
    for t in ts:
        t.start()
    for t in ts:
        t.join()


if __name__ == "__main__":
    main()
