"""The Toxiproxy HTTP API as a pure function: (method, path, headers, body) -> Response.

Owns routing (paths, methods, 404 for an unknown path, 405 for a known path with another method),
the browser guard (403), status codes and the exact bodies and content types the reference server
writes (JSON without newline; errors as Go's http.Error: the JSON error object, a newline and
`text/plain; charset=utf-8`). State changes are the Registry's; bytes on sockets are the server's.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from orbitmq.chaos.toxiproxy_registry import VERSION, ApiError, Registry

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def ok(value: Any, status: int = 200) -> Response:
    return Response(status, _dump(value), JSON)


def error(err: ApiError) -> Response:
    return Response(err.status, _dump(err.to_json()) + b"\n", TEXT, {"X-Content-Type-Options": "nosniff"})


def plain(status: int, text: str) -> Response:
    return Response(status, text.encode() + b"\n", TEXT, {"X-Content-Type-Options": "nosniff"})


# (path pattern, {method: handler name}); "{}" is one path segment
ROUTES: list[tuple[tuple[str, ...], dict[str, str]]] = [
    (("reset",), {"POST": "reset"}),
    (("proxies",), {"GET": "proxy_index", "POST": "proxy_create"}),
    (("populate",), {"POST": "populate"}),
    (("proxies", "{}"), {"GET": "proxy_show", "POST": "proxy_update", "PATCH": "proxy_update",
                         "DELETE": "proxy_delete"}),
    (("proxies", "{}", "toxics"), {"GET": "toxic_index", "POST": "toxic_create"}),
    (("proxies", "{}", "toxics", "{}"), {"GET": "toxic_show", "POST": "toxic_update", "PATCH": "toxic_update",
                                         "DELETE": "toxic_delete"}),
    (("version",), {"GET": "version"}),
]


def match(path: str) -> tuple[dict[str, str], list[str]] | None:
    """The methods of the route `path` names and its variables, or None (404)."""
    path = unquote(path.split("?", 1)[0])
    if not path.startswith("/"):
        return None
    parts = path[1:].split("/")
    for pattern, methods in ROUTES:
        if len(pattern) != len(parts):
            continue
        args = []
        for want, got in zip(pattern, parts, strict=True):
            if want == "{}":
                if not got:
                    break
                args.append(got)
            elif want != got:
                break
        else:
            return methods, args
    return None


def handle(registry: Registry, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
    """Answer one request. `headers` has lower-case names. Never raises for bad input."""
    rid = {"X-Toxiproxy-Request-Id": secrets.token_hex(10)}
    found = match(path)
    if found is None:
        resp = plain(404, "404 page not found")
    else:
        methods, args = found
        name = methods.get(method)
        if name is None:
            resp = Response(405)
        elif headers.get("user-agent", "").startswith("Mozilla/"):
            resp = plain(403, "User agent not allowed")
        else:
            try:
                resp = _dispatch(registry, name, args, body)
            except ApiError as e:
                resp = error(e)
    resp.headers.update(rid)
    return resp


def _dispatch(r: Registry, name: str, args: list[str], body: bytes) -> Response:
    if name == "version":
        return Response(200, f'{{"version": "{VERSION}"}}\n'.encode(), "application/json;charset=utf-8")
    if name == "reset":
        r.reset()
        return Response(204)
    if name == "proxy_index":
        return ok(r.list_proxies())
    if name == "proxy_create":
        return ok(r.create_proxy(body), 201)
    if name == "populate":
        status, value = r.populate(body)
        return ok(value, status)
    if name == "proxy_show":
        return ok(r.get(args[0]).to_json())
    if name == "proxy_update":
        return ok(r.update_proxy(args[0], body))
    if name == "proxy_delete":
        r.delete_proxy(args[0])
        return Response(204)
    if name == "toxic_index":
        return ok(r.list_toxics(args[0]))
    if name == "toxic_create":
        return ok(r.create_toxic(args[0], body))
    if name == "toxic_show":
        return ok(r.get_toxic(args[0], args[1]))
    if name == "toxic_update":
        return ok(r.update_toxic(args[0], args[1], body))
    if name == "toxic_delete":
        r.delete_toxic(args[0], args[1])
        return Response(204)
    raise AssertionError(name)
