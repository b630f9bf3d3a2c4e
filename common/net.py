"""Loopback addresses and ports: finding free ports and waiting for a listener."""

from __future__ import annotations

import ipaddress
import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return `n` distinct free ports (all sockets held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def split_addr(addr: str) -> tuple[str, int]:
    """'127.0.0.1:9876' -> ('127.0.0.1', 9876); raises ValueError with the bad text."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address must be host:port, got {addr!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost` (never resolves names through the network)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def wait_for_port(addr: str, timeout: float = 15.0) -> None:
    """Block until something accepts TCP connections at `addr`, or raise TimeoutError."""
    host, port = split_addr(addr)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {addr} after {timeout}s") from None
            time.sleep(0.05)
