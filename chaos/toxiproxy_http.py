"""HTTP/1.1 framing for the Toxiproxy API, sans-IO: parse a request head, frame a response.

Pure. Owns: the request line and headers (limits, Content-Length vs chunked, keep-alive rules,
`Expect: 100-continue`) and response serialization (status line, Date, Content-Length; none on
204). Reading from and writing to the socket is chaos/toxiproxy_server.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           411: "Length Required", 413: "Request Entity Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


class HttpError(Exception):
    """A request that cannot be framed; answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RequestHead:
    method: str
    target: str
    version: str
    headers: dict[str, str]   # lower-case names; repeated headers joined with ", "

    @property
    def path(self) -> str:
        t = self.target
        if t.startswith(("http://", "https://")):
            rest = t.split("://", 1)[1]
            t = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        return t

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    def content_length(self) -> int:
        """Declared body length (0 when absent); HttpError if malformed or too large."""
        raw = self.headers.get("content-length")
        if raw is None:
            return 0
        if not raw.strip().isdigit():
            raise HttpError(400, f"bad Content-Length {raw!r}")
        n = int(raw)
        if n > MAX_BODY:
            raise HttpError(413, "request body too large")
        return n

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn

    @property
    def expects_continue(self) -> bool:
        return self.headers.get("expect", "").lower() == "100-continue" and self.version == "HTTP/1.1"


def parse_head(raw: bytes) -> RequestHead:
    """Parse the bytes up to (not including) the blank line ending the head."""
    if len(raw) > MAX_HEAD:
        raise HttpError(431, "request head too large")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, f"bad request line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, f"bad header line {line[:100]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    head = RequestHead(parts[0], parts[1], parts[2], headers)
    if head.chunked and "content-length" in headers:
        del headers["content-length"]
    return head


def parse_chunk_size(line: bytes) -> int:
    """Size from a chunked-encoding size line (extensions ignored)."""
    text = line.split(b";", 1)[0].strip()
    try:
        n = int(text, 16)
    except ValueError:
        raise HttpError(400, f"bad chunk size {text[:20]!r}") from None
    if n < 0 or n > MAX_BODY:
        raise HttpError(413, "chunk too large")
    return n


def render(status: int, body: bytes = b"", content_type: str | None = None,
           headers: dict[str, str] | None = None, *, keep_alive: bool = True, now: float | None = None) -> bytes:
    """Serialize a response. `now` (epoch seconds) sets the Date header; None = current time."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Date: {formatdate(now, usegmt=True)}")
    if status != 204 and status >= 200:
        lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body if status != 204 else b"")
