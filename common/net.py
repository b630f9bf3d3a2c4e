"""Loopback addresses and ports: finding free ports and waiting for a listener."""

from __future__ import annotations

import ipaddress
import random
import socket
import time

LISTEN_PORTS_FLOOR = 10000   # ports handed out for servers are drawn from here up to the ephemeral range


def _ephemeral_floor() -> int:
    """The lowest port the kernel gives outgoing connections (Linux: ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now (see free_ports)."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return `n` distinct ports free on `host` right now, for servers started next.

    Drawn at random below the kernel's ephemeral range, so an outgoing connection of any process
    cannot take one between this call and the server's bind (which the OS's own pick, port 0, from
    inside that range allows on a busy machine); port 0's pick when that range leaves no room."""
    floor = _ephemeral_floor()
    socks: list[socket.socket] = []
    try:
        if floor - LISTEN_PORTS_FLOOR >= 1000:
            rnd = random.SystemRandom()
            tries = 0
            while len(socks) < n and tries < 50 * n:
                tries += 1
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.bind((host, rnd.randrange(LISTEN_PORTS_FLOOR, floor)))
                except OSError:
                    s.close()
                    continue
                socks.append(s)
        while len(socks) < n:
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
