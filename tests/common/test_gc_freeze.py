"""common/gc_freeze.py, in a child interpreter (it changes the process's collector): what
survives the startup collection is frozen, full collections afterwards walk only newer objects,
and frozen objects are still freed by reference counting."""

import subprocess
import sys

CHILD = r"""
import gc, weakref
from orbitmq.common.gc_freeze import freeze_startup_objects

class Node:
    pass

tables = [{"k": [i]} for i in range(20_000)]      # long-lived startup state
garbage = [Node() for _ in range(100)]
for a, b in zip(garbage, garbage[1:] + garbage[:1]):
    a.peer = b                                     # a reference cycle, dropped before the freeze
del garbage, a, b
probe = Node()                                     # frozen below, then dropped
ref = weakref.ref(probe)
frozen = freeze_startup_objects()
assert frozen == gc.get_freeze_count() >= 40_000, frozen
assert len(gc.get_objects()) < 1_000               # a full collection walks only what came after
del tables
fresh = [Node() for _ in range(10)]
for a, b in zip(fresh, fresh[1:] + fresh[:1]):
    a.peer = b
del fresh, a, b
assert gc.collect() >= 10                          # cycles made later are still collected
del probe
assert ref() is None                               # a frozen object is still freed by reference counting
print("ok", frozen)
"""


def test_freeze_exempts_startup_objects_and_keeps_later_collection_working():
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ok ")
