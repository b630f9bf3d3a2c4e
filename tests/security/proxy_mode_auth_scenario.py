"""Run in its own process (OrbitMQ's proxy-mode client cannot share one with the official client):
send through a proxy with credentials, then with a wrong secret; print one JSON line."""

from __future__ import annotations

import json
import sys

from orbitmq.client import Message
from orbitmq.client import errors as cerr
from orbitmq.client.proxy_mode import ProxyProducer


def main(endpoint: str, ak: str, sk: str, topic: str) -> None:
    out: dict = {}
    with ProxyProducer(endpoint, credentials=(ak, sk), retries=0, send_timeout_s=10) as p:
        for _ in range(60):   # the proxy may not know the policy yet (refresh every second)
            try:
                out["offset"] = p.send(Message(topic, b"proxy-mode-signed")).queue_offset
                break
            except (cerr.ForbiddenError, cerr.UnauthenticatedError) as e:   # 40100 for an ACL denial too
                out["forbidden_first"] = str(e)
                import time
                time.sleep(0.5)
    with ProxyProducer(endpoint, credentials=(ak, sk + "-wrong"), retries=0, send_timeout_s=10) as p:
        try:
            p.send(Message(topic, b"x"))
            out["wrong_secret"] = "accepted"
        except cerr.OrbitError as e:
            out["wrong_secret"] = type(e).__name__
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:5])
