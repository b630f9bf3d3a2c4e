"""The process's dial map: which host:port to dial for an address learned from a peer (like
/etc/hosts, but for host:port pairs).

Processes announce addresses (a broker's gRPC and HA address, a controller's gRPC address in a
NOT_LEADER answer, Raft addresses) and learn them from each other. Every place that dials an
address it was told about calls `resolve(addr)` first; with no map it returns `addr` unchanged.
A map is installed from the process's config (`dial_map` table of `orbitmq broker` and
`orbitmq controller`) or, for clients and admin tools, from the environment variable
`ORBITMQ_DIAL_MAP` ("advertised=dial,advertised=dial"). Identity never changes: a process still
announces and compares the advertised addresses, only the socket goes elsewhere. The chaos
cluster uses it to route every node-to-node link through its own proxy; it serves equally for
NAT or port forwarding.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

ENV = "ORBITMQ_DIAL_MAP"

_lock = threading.Lock()
_map: dict[str, str] | None = None


def parse(text: str) -> dict[str, str]:
    """'a:1=b:2,c:3=d:4' -> {'a:1': 'b:2', 'c:3': 'd:4'}; raises ValueError on a malformed entry."""
    from orbitmq.common.net import split_addr

    out: dict[str, str] = {}
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        adv, sep, dial = item.partition("=")
        if not sep:
            raise ValueError(f"dial map entry must be advertised=dial, got {item!r}")
        split_addr(adv.strip())
        split_addr(dial.strip())
        out[adv.strip()] = dial.strip()
    return out


def format_map(mapping: Mapping[str, str]) -> str:
    """The inverse of `parse` (for ORBITMQ_DIAL_MAP)."""
    return ",".join(f"{a}={d}" for a, d in sorted(mapping.items()))


def validate(mapping: Mapping[str, str]) -> None:
    """Raise ValueError unless every key and value is host:port."""
    from orbitmq.common.net import split_addr

    for adv, dial in mapping.items():
        split_addr(str(adv))
        split_addr(str(dial))


def install(mapping: Mapping[str, str], *, replace: bool = False) -> None:
    """Add `mapping` to this process's map (or replace the whole map)."""
    global _map
    validate(mapping)
    with _lock:
        base = {} if replace else dict(_current_locked())
        base.update({str(k): str(v) for k, v in mapping.items()})
        _map = base


def remove(addresses: Mapping[str, str] | list[str]) -> None:
    """Forget the entries for these advertised addresses."""
    global _map
    with _lock:
        cur = dict(_current_locked())
        for a in addresses:
            cur.pop(a, None)
        _map = cur


def _current_locked() -> dict[str, str]:
    global _map
    if _map is None:
        _map = parse(os.environ.get(ENV, ""))
    return _map


def current() -> dict[str, str]:
    """A copy of the map in force."""
    with _lock:
        return dict(_current_locked())


def resolve(addr: str) -> str:
    """The host:port to dial for `addr` (itself unless the map names another)."""
    m = _map
    if m is None:
        with _lock:
            m = _current_locked()
    return m.get(addr, addr)
