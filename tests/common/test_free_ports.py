"""common/net.free_ports: distinct ports a server can bind at once, drawn below the kernel's
ephemeral range (where outgoing connections of other processes never take them)."""

import socket

from orbitmq.common import net


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    floor = net._ephemeral_floor()
    ports = net.free_ports(40)
    assert len(set(ports)) == 40
    if floor - net.LISTEN_PORTS_FLOOR >= 1000:
        assert all(net.LISTEN_PORTS_FLOOR <= p < floor for p in ports)
    socks = []
    try:
        for p in ports:     # every one can be listened on right away
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", p))
            s.listen()
        assert net.free_port() not in ports   # a port in use is never handed out
    finally:
        for s in socks:
            s.close()
