"""Keeping freed heap memory for reuse (glibc's malloc), for processes that move large buffers.

A broker receives, parses, stores and answers requests of hundreds of KiB (batch records, pull
replies), and frees those buffers a moment later. With glibc's defaults a freed buffer of that size
is either its own `mmap` (unmapped at once) or returned to the OS when the top of the heap is free
(`M_TRIM_THRESHOLD`), so the next request's buffers are fresh pages: one page fault per 4 KiB,
which on a VM costs more than copying the bytes. `keep_freed_heap` raises both limits so that such
buffers come from, and go back to, memory the process already has. The memory kept is bounded by
`keep_bytes` of free heap above what is in use.

Process-wide: called by the broker's entry point only (a library must not change its host's malloc).
"""

from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_BYTES = 16 << 20        # buffers below this come from the heap (glibc's maximum is 32 MiB on 64-bit)


def keep_freed_heap(keep_bytes: int) -> bool:
    """Keep up to `keep_bytes` of freed heap (and serve buffers below MMAP_BYTES from the heap);
    True when set. Not on non-glibc systems, with `keep_bytes` 0, or when the environment already
    tunes malloc (MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_, GLIBC_TUNABLES): False."""
    if keep_bytes <= 0:
        return False
    env = os.environ
    if "MALLOC_TRIM_THRESHOLD_" in env or "MALLOC_MMAP_THRESHOLD_" in env or "malloc" in env.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
        libc_ok = ctypes.CDLL(None).gnu_get_libc_version is not None
    except (OSError, AttributeError):
        return False
    if not libc_ok:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # both, or neither matters: setting one turns off glibc's own raising of the mmap threshold
    return bool(mallopt(_M_MMAP_THRESHOLD, min(MMAP_BYTES, keep_bytes)) and
                mallopt(_M_TRIM_THRESHOLD, min(keep_bytes, 1 << 30)))
