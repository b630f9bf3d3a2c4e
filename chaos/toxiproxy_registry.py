"""The Toxiproxy proxy registry: proxies, their toxic chains, and every API state transition.

Pure: no sockets, threads or clocks. Owns the rules of the reference server (v2.12.0): the order
in which a request is checked (404, then body, then fields, then 409), which change stops or
starts a proxy, what `/reset` and `/populate` do, and the error each failure gives (`ApiError`,
rendered by chaos/toxiproxy_api.py). Listening sockets and live connections belong to a `Runtime`
passed in (chaos/toxiproxy_server.py in production, a recording fake in tests); the registry calls
it synchronously, in the order the reference server acts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from orbitmq.chaos.toxics import (
    DIRECTIONS,
    TOXIC_TYPES,
    AttributeError_,
    Toxic,
    decode_attributes,
    parse_direction,
    validate_attributes,
)
from orbitmq.chaos.toxiproxy_decode import (
    BOOL,
    FLOAT32,
    OBJECT,
    STRING,
    DecodeError,
    decode_struct,
    first_value,
    json_kind,
)

VERSION = "2.12.0"  # the reference API version this registry answers like


class ApiError(Exception):
    """An API failure: message and HTTP status, rendered as {"error": message, "status": status}."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


def bad_body(e: Exception) -> ApiError:
    return ApiError(f"bad request body: {e}", 400)


def missing(what: str) -> ApiError:
    return ApiError(f"missing required field: {what}", 400)


PROXY_NOT_FOUND = ("proxy not found", 404)
PROXY_EXISTS = ("proxy already exists", 409)
INVALID_STREAM = ("stream was invalid, can be either upstream or downstream", 400)
INVALID_TYPE = ("invalid toxic type", 400)
TOXIC_EXISTS = ("toxic already exists", 409)
TOXIC_NOT_FOUND = ("toxic not found", 404)


class BindError(Exception):
    """The runtime could not listen on a proxy's address (answered as 500, like the reference)."""


class Runtime(Protocol):
    """What the registry needs from the world. Calls are synchronous and made in order."""

    def start(self, proxy: ProxyState) -> str:
        """Listen on `proxy.listen`; return the bound address "host:port"; raise BindError."""

    def stop(self, proxy: ProxyState) -> None:
        """Stop listening and close both sockets of every connection of `proxy`."""

    def toxic_added(self, proxy: ProxyState, toxic: Toxic) -> None:
        """Append `toxic` to the chain of its direction on every live connection."""

    def toxic_updated(self, proxy: ProxyState, toxic: Toxic) -> None:
        """Replace the toxic of that name on every live connection (its held data is flushed)."""

    def toxic_removed(self, proxy: ProxyState, toxic: Toxic) -> None:
        """Remove the toxic of that name from every live connection (flushing what it held)."""


def resolve_listen(listen: str) -> str:
    """The reference's resolved form of a listen address, without DNS: "localhost" and IP literals.

    "localhost:80" -> "127.0.0.1:80", ":0" and "" -> ":0", "[::1]:1" -> "[::1]:1". Raises ValueError with
    Go's message for a missing or bad port; other host names are refused (no resolver here)."""
    if listen == "":
        return ":0"  # Go resolves an empty address to the wildcard host, any port
    if listen.startswith("["):
        close = listen.find("]")
        if close < 0:
            raise ValueError(f"address {listen}: missing ']' in address")
        host, rest = listen[1:close], listen[close + 1:]
        if not rest.startswith(":"):
            raise ValueError(f"address {listen}: missing port in address")
        port_text = rest[1:]
    else:
        host, sep, port_text = listen.rpartition(":")
        if not sep:
            raise ValueError(f"address {listen}: missing port in address")
        if ":" in host:
            raise ValueError(f"address {listen}: too many colons in address")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"address {listen}: invalid port")
    port = int(port_text)
    if host == "":
        return f":{port}"
    if host.lower() == "localhost":
        return f"127.0.0.1:{port}"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"lookup {host}: the embedded server resolves only localhost and IP literals") from None
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


@dataclass
class ProxyState:
    """One proxy. `listen` is the bound address while it runs; `chains` hold toxics per direction."""

    name: str
    listen: str
    upstream: str
    enabled: bool = False
    uid: int = 0
    chains: dict[str, list[Toxic]] = field(default_factory=lambda: {d: [] for d in DIRECTIONS})

    def toxics(self) -> list[Toxic]:
        """Upstream chain then downstream chain, each in insertion order (as GET lists them)."""
        return [t for d in DIRECTIONS for t in self.chains[d]]

    def find(self, name: str) -> Toxic | None:
        for t in self.toxics():
            if t.name == name:
                return t
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxics()],
        }


PROXY_FIELDS = {"name": STRING, "listen": STRING, "upstream": STRING, "enabled": BOOL}
TOXIC_FIELDS = {"name": STRING, "type": STRING, "stream": STRING, "toxicity": FLOAT32, "attributes": OBJECT}


class Registry:
    """Every proxy by name, in creation order, and the operations of the HTTP API."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.proxies: dict[str, ProxyState] = {}
        self._next_uid = 1

    # -- helpers -------------------------------------------------------------------------------
    def _new(self, name: str, listen: str, upstream: str) -> ProxyState:
        p = ProxyState(name=name, listen=listen, upstream=upstream, uid=self._next_uid)
        self._next_uid += 1
        return p

    def get(self, name: str) -> ProxyState:
        p = self.proxies.get(name)
        if p is None:
            raise ApiError(*PROXY_NOT_FOUND)
        return p

    def _start(self, p: ProxyState) -> bool:
        """Start `p` if stopped (False if it already ran); a bind failure is ApiError 500."""
        if p.enabled:
            return False
        try:
            p.listen = self.runtime.start(p)
        except BindError as e:
            raise ApiError(str(e), 500) from None
        p.enabled = True
        return True

    def _stop(self, p: ProxyState) -> None:
        if not p.enabled:
            return
        p.enabled = False
        self.runtime.stop(p)

    def _differs(self, p: ProxyState, listen: str, upstream: str) -> bool:
        try:
            resolved = resolve_listen(listen)
        except ValueError as e:
            raise ApiError(str(e), 500) from None
        return p.listen != resolved or p.upstream != upstream

    # -- proxies -------------------------------------------------------------------------------
    def list_proxies(self) -> dict[str, Any]:
        """GET /proxies: every proxy keyed by name (sorted, as Go marshals a map)."""
        return {name: self.proxies[name].to_json() for name in sorted(self.proxies)}

    def create_proxy(self, body: bytes) -> dict[str, Any]:
        """POST /proxies -> 201."""
        try:
            inp = decode_struct(first_value(body), PROXY_FIELDS,
                                {"name": "", "listen": "", "upstream": "", "enabled": True}, "toxiproxy.Proxy")
        except DecodeError as e:
            raise bad_body(e) from None
        if not inp["name"]:
            raise missing("name")
        if not inp["upstream"]:
            raise missing("upstream")
        if inp["name"] in self.proxies:
            raise ApiError(*PROXY_EXISTS)
        p = self._new(inp["name"], inp["listen"], inp["upstream"])
        if inp["enabled"]:
            self._start(p)
        self.proxies[p.name] = p
        return p.to_json()

    def update_proxy(self, name: str, body: bytes) -> dict[str, Any]:
        """PATCH or POST /proxies/{name} -> 200. `name` in the body is ignored."""
        p = self.get(name)
        try:
            inp = decode_struct(first_value(body), PROXY_FIELDS,
                                {"name": p.name, "listen": p.listen, "upstream": p.upstream, "enabled": p.enabled},
                                "toxiproxy.Proxy")
        except DecodeError as e:
            raise bad_body(e) from None
        if self._differs(p, inp["listen"], inp["upstream"]):
            self._stop(p)
            p.listen, p.upstream = inp["listen"], inp["upstream"]
        if inp["enabled"] != p.enabled:
            if inp["enabled"]:
                self._start(p)
            else:
                self._stop(p)
        return p.to_json()

    def delete_proxy(self, name: str) -> None:
        """DELETE /proxies/{name} -> 204."""
        p = self.get(name)
        self._stop(p)
        del self.proxies[name]

    def reset(self) -> None:
        """POST /reset -> 204: start every stopped proxy, then remove all its toxics."""
        for p in list(self.proxies.values()):
            self._start(p)
            for d in DIRECTIONS:
                while p.chains[d]:
                    t = p.chains[d].pop(0)
                    self.runtime.toxic_removed(p, t)

    def populate(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST /populate -> (status, {"proxies": [...]} plus "error"/"status" on failure).

        Every entry is checked before any is applied; then each one is kept as it is (same
        name, resolved listen and upstream) or replaces the old one. No rollback on failure."""
        try:
            value = first_value(body)
        except DecodeError as e:
            return self._populate_error(bad_body(e), None)
        if value is None:
            value = []
        if not isinstance(value, list):
            kind = json_kind(value)
            return self._populate_error(bad_body(DecodeError(
                f"json: cannot unmarshal {kind} into Go value of type []struct {{ toxiproxy.Proxy }}")), None)
        entries = []
        first_error: DecodeError | None = None
        for item in value:
            try:
                entries.append(decode_struct(item, PROXY_FIELDS,
                                             {"name": "", "listen": "", "upstream": "", "enabled": None},
                                             "toxiproxy.Proxy"))
            except DecodeError as e:
                first_error = first_error or e
        if first_error is not None:
            return self._populate_error(bad_body(first_error), None)
        for i, e in enumerate(entries, start=1):
            if not e["name"]:
                return self._populate_error(missing(f"name at proxy {i}"), None)
            if not e["upstream"]:
                return self._populate_error(missing(f"upstream at proxy {i}"), None)
        done: list[ProxyState] = []
        for e in entries:
            start = e["enabled"] is not False
            try:
                done.append(self._add_or_replace(e["name"], e["listen"], e["upstream"], start))
            except ApiError as err:
                return self._populate_error(err, done)
        return 201, {"proxies": [p.to_json() for p in done] or None}

    def _populate_error(self, err: ApiError, done: list[ProxyState] | None) -> tuple[int, dict[str, Any]]:
        return err.status, {**err.to_json(), "proxies": [p.to_json() for p in done] if done else None}

    def _add_or_replace(self, name: str, listen: str, upstream: str, start: bool) -> ProxyState:
        existing = self.proxies.get(name)
        if existing is not None:
            if not self._differs(existing, listen, upstream):
                return existing
            self._stop(existing)
        p = self._new(name, listen, upstream)
        if start:
            self._start(p)
        self.proxies[name] = p
        return p

    # -- toxics --------------------------------------------------------------------------------
    def list_toxics(self, proxy: str) -> list[dict[str, Any]]:
        return [t.to_json() for t in self.get(proxy).toxics()]

    def get_toxic(self, proxy: str, toxic: str) -> dict[str, Any]:
        t = self.get(proxy).find(toxic)
        if t is None:
            raise ApiError(*TOXIC_NOT_FOUND)
        return t.to_json()

    def create_toxic(self, proxy: str, body: bytes) -> dict[str, Any]:
        """POST /proxies/{proxy}/toxics -> 200 (not 201, as the reference)."""
        p = self.get(proxy)
        try:
            value = first_value(body)
            w = decode_struct(value, TOXIC_FIELDS,
                              {"name": "", "type": "", "stream": "downstream", "toxicity": 1.0, "attributes": None},
                              "toxics.ToxicWrapper")
        except DecodeError as e:
            raise bad_body(e) from None
        if parse_direction(w["stream"]) is None:
            raise ApiError(*INVALID_STREAM)
        name = w["name"] or f"{w['type']}_{w['stream']}"
        if w["type"] not in TOXIC_TYPES:
            raise ApiError(*INVALID_TYPE)
        if p.find(name) is not None:
            raise ApiError(*TOXIC_EXISTS)
        try:
            attrs = decode_attributes(w["type"], w["attributes"], {})
            validate_attributes(w["type"], attrs)
        except (DecodeError, AttributeError_) as e:
            raise bad_body(e) from None
        t = Toxic(name=name, type=w["type"], stream=w["stream"], toxicity=w["toxicity"], attributes=attrs)
        p.chains[t.direction].append(t)
        self.runtime.toxic_added(p, t)
        return t.to_json()

    def update_toxic(self, proxy: str, toxic: str, body: bytes) -> dict[str, Any]:
        """PATCH or POST /proxies/{proxy}/toxics/{toxic} -> 200: attributes merged, toxicity replaced."""
        p = self.get(proxy)
        old = p.find(toxic)
        if old is None:
            raise ApiError(*TOXIC_NOT_FOUND)
        try:
            u = decode_struct(first_value(body), {"attributes": OBJECT, "toxicity": FLOAT32},
                              {"attributes": None, "toxicity": old.toxicity}, "struct { Attributes; Toxicity }")
            attrs = decode_attributes(old.type, u["attributes"], old.attributes)
            validate_attributes(old.type, attrs)
        except (DecodeError, AttributeError_) as e:
            raise bad_body(e) from None
        new = replace(old, toxicity=u["toxicity"], attributes=attrs)
        chain = p.chains[old.direction]
        chain[chain.index(old)] = new
        self.runtime.toxic_updated(p, new)
        return new.to_json()

    def delete_toxic(self, proxy: str, toxic: str) -> None:
        p = self.get(proxy)
        t = p.find(toxic)
        if t is None:
            raise ApiError(*TOXIC_NOT_FOUND)
        p.chains[t.direction].remove(t)
        self.runtime.toxic_removed(p, t)
