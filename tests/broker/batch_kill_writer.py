"""Child process of test_batch_process.py: appends batch records forever from several threads;
prints every flushed batch.

Usage: python batch_kill_writer.py STORE_DIR SEGMENT_SIZE FLUSH_MODE. Each line on stdout is
`ACK <physical_offset> <end_offset> <queue_id> <base_queue_offset> <count> <first_counter>`, written
only after wait_flushed returned True for that batch. Runs until killed (bounded at 10 minutes).
"""

from __future__ import annotations

import random
import sys
import threading
import time

from orbitmq.broker.store import MessageStore, StoreConfig
from orbitmq.broker.store import batch_record as br

TOPIC = "KillBatch"
PREFIX = "KILL"


def body(counter: int, size: int) -> bytes:
    return f"b{counter}-".encode().ljust(size, b"z")


def main() -> None:
    store_dir, seg, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = MessageStore(StoreConfig(store_dir=store_dir, segment_size=seg, flush_mode=mode, flush_interval_s=0.01,
                                 expiry_interval_s=0))
    s.open()
    out_lock = threading.Lock()
    ids_lock = threading.Lock()
    next_id = [int(time.time() * 1000) % (1 << 30) * 1000]   # a fresh range in every life
    deadline = time.monotonic() + 600

    def writer(t: int) -> None:
        rnd = random.Random(t)
        while time.monotonic() < deadline:
            n = rnd.randint(1, 40)
            with ids_lock:
                first = next_id[0]
                next_id[0] += n
            sizes = [rnd.randint(20, 3000) for _ in range(n)]
            data = br.encode(TOPIC, [body(first + i, sizes[i]) for i in range(n)],
                             tags=[f"t{(first + i) % 3}" for i in range(n)], keys=[[f"k{first + i}"] for i in range(n)],
                             id_prefix=PREFIX, id_first=first)
            r, _ = s.put_batch_record(data, t)
            if s.wait_flushed(r.end_offset, 30):
                with out_lock:
                    sys.stdout.write(f"ACK {r.physical_offset} {r.end_offset} {r.queue_id} {r.base_queue_offset} "
                                     f"{r.count} {first} {','.join(map(str, sizes))}\n")
                    sys.stdout.flush()

    ts = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(4)]
    print("READY", flush=True)  # before any writer runs: the first line the parent reads
    for t in ts:
        t.start()
    for t in ts:
        t.join()


if __name__ == "__main__":
    main()
