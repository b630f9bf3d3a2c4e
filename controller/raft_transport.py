"""pysyncobj's TCP transport with the process dial map (`orbitmq.common.dial_map`) applied.

pysyncobj identifies a peer by the address it was configured with: the node that dials sends
its own configured address as the first message, and the other side looks the peer up by it.
This transport keeps all of that and changes one thing: the socket to a peer goes to
`dial_map.resolve(peer address)` (e.g. a proxy in front of it), while the node still announces
and is known by its own configured Raft address.
"""

from __future__ import annotations

from typing import Any

from pysyncobj.transport import TCPTransport

from orbitmq.common import dial_map
from orbitmq.common.net import split_addr


class DialMapTransport(TCPTransport):
    """TCPTransport whose outgoing connection to each peer dials the mapped address."""

    def addNode(self, node: Any) -> None:  # noqa: N802 - pysyncobj's name
        super().addNode(node)
        conn = self._connections.get(node)
        target = dial_map.resolve(str(node.address))
        if conn is None or target == node.address:
            return
        host, port = split_addr(target)
        connect = conn.connect
        # pysyncobj reuses this connection object for every reconnect, so the target sticks
        conn.connect = lambda _host, _port: connect(host, port)
