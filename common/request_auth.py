"""User request signing, as RocketMQ 5 clients sign (pure: no sockets, the clock is passed in).

A signed call carries two metadata keys:

    x-mq-date-time: 20261126T014502Z
    authorization:  MQv2-HMAC-SHA1 Credential=<access key>, SignedHeaders=x-mq-date-time,
                    Signature=<hex HMAC-SHA1(secret, x-mq-date-time)>

(the official clients' format; Python sends lowercase hex, Java uppercase; both are accepted).
`verify` checks a call's metadata against a secret lookup and returns the access key it proves,
or raises `AuthFailure`. Unlike RocketMQ, a date farther than `max_skew_s` from the verifier's clock
is refused, so a captured header stops working. The official clients write their *local* wall time
followed by a literal `Z`, so a date is accepted when it is close to the verifier's UTC time or to its
local wall time (`local_offset_s`, passed in: clients in the server's time zone work too).
The identity is only ever the access key whose secret verified the signature; nothing else in the
metadata names the caller.
"""

from __future__ import annotations

import calendar
import enum
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

AUTHORIZATION = "authorization"
DATE_TIME = "x-mq-date-time"
ALGORITHM = "MQv2-HMAC-SHA1"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
DEFAULT_MAX_SKEW_S = 900.0
MAX_HEADER_LEN = 1024


class Failure(enum.StrEnum):
    MISSING = "MISSING"              # no authorization or no x-mq-date-time
    MALFORMED = "MALFORMED"          # not the MQv2-HMAC-SHA1 format
    UNKNOWN_KEY = "UNKNOWN_KEY"      # no such user
    BAD_SIGNATURE = "BAD_SIGNATURE"  # the signature does not match the user's secret
    STALE_DATE = "STALE_DATE"        # the signed date is too far from the server clock


class AuthFailure(Exception):
    """A call that does not prove a user's identity; `kind` says why, the message says it in words."""

    def __init__(self, kind: Failure, message: str, access_key: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.access_key = access_key


_last_date: list = [None, ""]   # (second, formatted): one strftime per second, not per call


def format_date(unix_s: float) -> str:
    """`unix_s` as the x-mq-date-time string (UTC)."""
    sec = int(unix_s // 1)
    last = _last_date
    if last[0] != sec:
        last[1] = time.strftime(DATE_FORMAT, time.gmtime(sec))
        last[0] = sec
    return last[1]


def parse_date(value: str) -> int:
    """An x-mq-date-time string as unix seconds, reading it as UTC; ValueError if malformed."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z" or not (value[:8] + value[9:15]).isdigit() \
            or not value.isascii():
        raise ValueError(f"bad {DATE_TIME} {value[:40]!r}")
    y, mo, d = int(value[0:4]), int(value[4:6]), int(value[6:8])
    h, mi, s = int(value[9:11]), int(value[11:13]), int(value[13:15])
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y or 1, mo)[1] and h <= 23 and mi <= 59 and s <= 61):
        raise ValueError(f"bad {DATE_TIME} {value[:40]!r}")
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))


_SIG_CACHE: dict[tuple[str, str], str] = {}   # (secret, date) -> signature: dates repeat within a second
_SIG_CACHE_MAX = 4096


def signature(secret: str, date_time: str) -> str:
    """Lowercase hex HMAC-SHA1 of `date_time` keyed with `secret` (both UTF-8)."""
    key = (secret, date_time)
    sig = _SIG_CACHE.get(key)
    if sig is None:
        sig = hmac.new(secret.encode("utf-8"), date_time.encode("utf-8"), hashlib.sha1).hexdigest()
        if len(_SIG_CACHE) >= _SIG_CACHE_MAX:
            _SIG_CACHE.clear()
        _SIG_CACHE[key] = sig
    return sig


def authorization(access_key: str, secret: str, date_time: str) -> str:
    return (f"{ALGORITHM} Credential={access_key}, SignedHeaders={DATE_TIME}, "
            f"Signature={signature(secret, date_time)}")


def signing_metadata(access_key: str, secret: str, unix_s: float) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two metadata entries that sign a call made at `unix_s`."""
    dt = format_date(unix_s)
    return (DATE_TIME, dt), (AUTHORIZATION, authorization(access_key, secret, dt))


def parse_authorization(value: str) -> tuple[str, str, str]:
    """(access key, signed headers, signature) of an authorization value; AuthFailure if malformed.
    Parsed as RocketMQ does: algorithm, a space, then `k=v` items separated by commas; the access key
    is the Credential up to its first `/`."""
    if len(value) > MAX_HEADER_LEN:
        raise AuthFailure(Failure.MALFORMED, f"authorization is longer than {MAX_HEADER_LEN} characters")
    algo, _, rest = value.strip().partition(" ")
    if algo != ALGORITHM:
        raise AuthFailure(Failure.MALFORMED, f"authorization algorithm must be {ALGORITHM}, got {algo[:40]!r}")
    items: dict[str, str] = {}
    for part in rest.split(","):
        k, eq, v = part.strip().partition("=")
        if eq:
            items[k.strip()] = v.strip()
    ak = items.get("Credential", "").split("/", 1)[0]
    sig = items.get("Signature", "")
    if not ak or not sig:
        raise AuthFailure(Failure.MALFORMED, "authorization needs Credential=<access key> and Signature=<hex>")
    return ak, items.get("SignedHeaders", ""), sig


_VERIFIED: dict[tuple[str, str], tuple[str, str, int]] = {}   # (authorization, date) -> (ak, secret, date s)
_VERIFIED_MAX = 4096


def _skew(when: int, now_s: float, local_offset_s: float) -> float:
    return min(abs(when - now_s), abs(when - (now_s + local_offset_s)))


def verify(metadata: Mapping[str, str], secret_of: Callable[[str], str | None], now_s: float,
           max_skew_s: float = DEFAULT_MAX_SKEW_S, local_offset_s: float = 0.0) -> str:
    """The access key whose secret signed this call, or AuthFailure.

    `metadata`: the call's metadata (lowercase keys); `secret_of(access_key)`: that user's secret
    or None; `now_s`: the verifier's unix time; `local_offset_s`: its local time minus UTC.
    A header pair verified before (a client signs with the same date for a whole second) is
    accepted again only while the user's secret is unchanged and the date is still within the skew.
    """
    value = metadata.get(AUTHORIZATION)
    if not value:
        raise AuthFailure(Failure.MISSING, "request is not signed: the authorization metadata is missing")
    hit = _VERIFIED.get((value, metadata.get(DATE_TIME, "")))
    if hit is not None and secret_of(hit[0]) == hit[1] and _skew(hit[2], now_s, local_offset_s) <= max_skew_s:
        return hit[0]
    ak, signed, sig = parse_authorization(value)
    if signed and DATE_TIME not in [h.strip().lower() for h in signed.split(";")]:
        raise AuthFailure(Failure.MALFORMED, f"SignedHeaders must include {DATE_TIME}", ak)
    dt = metadata.get(DATE_TIME)
    if not dt:
        raise AuthFailure(Failure.MISSING, f"request is not signed: the {DATE_TIME} metadata is missing", ak)
    try:
        when = parse_date(dt)
    except ValueError:
        raise AuthFailure(Failure.MALFORMED, f"{DATE_TIME} {dt[:40]!r} is not YYYYMMDDTHHMMSSZ", ak) from None
    skew = _skew(when, now_s, local_offset_s)
    if skew > max_skew_s:
        raise AuthFailure(Failure.STALE_DATE, f"{DATE_TIME} {dt} is {skew:.0f} s away from the server clock "
                          f"(at most {max_skew_s:.0f} s): check the client's clock", ak)
    secret = secret_of(ak)
    if secret is None:
        raise AuthFailure(Failure.UNKNOWN_KEY, f"unknown access key {ak[:64]!r}", ak)
    if not hmac.compare_digest(sig.lower().encode("ascii", "replace"), signature(secret, dt).encode()):
        raise AuthFailure(Failure.BAD_SIGNATURE, f"signature of access key {ak[:64]!r} does not match "
                          "(wrong secret key?)", ak)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[(value, dt)] = (ak, secret, when)
    return ak
