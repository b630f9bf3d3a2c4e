"""Request signing core (common/request_auth.py): the official client's format, and every refusal."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orbitmq.common import request_auth as ra

KEYS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}
NOW = 1_790_000_000.0


def official_metadata(ak: str, sk: str, when: datetime) -> dict[str, str]:
    """What rocketmq-python-client 5.1.2 `Signature.metadata` sends (its code, rewritten here)."""
    dt = when.strftime("%Y%m%dT%H%M%SZ")
    sig = hmac.new(sk.encode(), dt.encode(), hashlib.sha1).hexdigest()
    return {"x-mq-date-time": dt,
            "authorization": f"MQv2-HMAC-SHA1 Credential={ak}, SignedHeaders=x-mq-date-time, Signature={sig}"}


def test_official_client_format_verifies():
    md = official_metadata("alice", KEYS["alice"], datetime.utcfromtimestamp(NOW))
    assert ra.verify(md, KEYS.get, NOW) == "alice"
    ours = dict(ra.signing_metadata("alice", KEYS["alice"], NOW))
    assert ours == md


def test_java_uppercase_hex_and_credential_scope_accepted():
    md = official_metadata("bob", KEYS["bob"], datetime.utcfromtimestamp(NOW))
    head, _, sig = md["authorization"].rpartition("Signature=")
    md["authorization"] = head.replace("Credential=bob", "Credential=bob/2026/region") + "Signature=" + sig.upper()
    assert ra.verify(md, KEYS.get, NOW) == "bob"


@pytest.mark.parametrize("mutate, kind", [
    (lambda md: md.pop("authorization"), ra.Failure.MISSING),
    (lambda md: md.pop("x-mq-date-time"), ra.Failure.MISSING),
    (lambda md: md.update(authorization="Basic abc"), ra.Failure.MALFORMED),
    (lambda md: md.update(authorization="MQv2-HMAC-SHA1 Credential=alice"), ra.Failure.MALFORMED),
    (lambda md: md.update(authorization="MQv2-HMAC-SHA1 Credential=, Signature=00"), ra.Failure.MALFORMED),
    (lambda md: md.update({"x-mq-date-time": "yesterday"}), ra.Failure.MALFORMED),
    (lambda md: md.update(authorization=md["authorization"].replace("alice", "mallory")), ra.Failure.UNKNOWN_KEY),
    (lambda md: md.update(authorization=md["authorization"][:-4] + "0000"), ra.Failure.BAD_SIGNATURE),
    (lambda md: md.update(authorization=md["authorization"].replace("x-mq-date-time", "host")),
     ra.Failure.MALFORMED),
])
def test_refusals(mutate, kind):
    md = dict(ra.signing_metadata("alice", KEYS["alice"], NOW))
    mutate(md)
    with pytest.raises(ra.AuthFailure) as e:
        ra.verify(md, KEYS.get, NOW)
    assert e.value.kind == kind
    assert str(e.value)


def test_signature_with_another_users_secret_refused():
    md = dict(ra.signing_metadata("alice", KEYS["bob"], NOW))
    with pytest.raises(ra.AuthFailure) as e:
        ra.verify(md, KEYS.get, NOW)
    assert e.value.kind == ra.Failure.BAD_SIGNATURE and e.value.access_key == "alice"


def test_changed_date_invalidates_signature():
    md = dict(ra.signing_metadata("alice", KEYS["alice"], NOW - 3600))
    md["x-mq-date-time"] = ra.format_date(NOW)       # replay with a fresh date: signature no longer matches
    with pytest.raises(ra.AuthFailure) as e:
        ra.verify(md, KEYS.get, NOW)
    assert e.value.kind == ra.Failure.BAD_SIGNATURE


@settings(max_examples=300, deadline=None)
@given(offset=st.integers(-10 * 86400, 10 * 86400), skew=st.integers(1, 3600))
def test_skew_window_exact(offset, skew):
    md = dict(ra.signing_metadata("alice", KEYS["alice"], NOW + offset))
    if abs(offset) <= skew:
        assert ra.verify(md, KEYS.get, NOW, max_skew_s=skew) == "alice"
    else:
        with pytest.raises(ra.AuthFailure) as e:
            ra.verify(md, KEYS.get, NOW, max_skew_s=skew)
        assert e.value.kind == ra.Failure.STALE_DATE


@settings(max_examples=200, deadline=None)
@given(tz_hours=st.integers(-12, 14), drift=st.integers(-100, 100))
def test_local_wall_time_client_in_server_zone(tz_hours, drift):
    """The official clients send local wall time with a literal Z: accepted when the verifier's own
    local offset matches, refused when the zones differ by more than the skew."""
    local = NOW + tz_hours * 3600 + drift
    md = dict(ra.signing_metadata("alice", KEYS["alice"], local))
    assert ra.verify(md, KEYS.get, NOW, max_skew_s=900, local_offset_s=tz_hours * 3600) == "alice"
    if abs(tz_hours) >= 1:
        with pytest.raises(ra.AuthFailure):
            ra.verify(md, KEYS.get, NOW, max_skew_s=900, local_offset_s=0)


@settings(max_examples=150, deadline=None)
@given(ak=st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=",/="), min_size=1,
                  max_size=40),
       sk=st.text(min_size=1, max_size=60), t=st.floats(1e9, 4e9))
def test_round_trip_any_key(ak, sk, t):
    md = dict(ra.signing_metadata(ak, sk, t))
    assert ra.verify(md, {ak: sk}.get, t) == ak
    wrong = sk + "x"
    with pytest.raises(ra.AuthFailure):
        ra.verify(md, {ak: wrong}.get, t)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["authorization", "x-mq-date-time", "x-other"]), st.text(max_size=200)))
def test_garbage_metadata_never_crashes_never_passes(md):
    with pytest.raises(ra.AuthFailure):
        ra.verify(md, KEYS.get, time.time())


def test_verified_headers_remembered_only_while_the_secret_and_date_hold():
    keys = {"carol": "carol-secret-1"}
    md = dict(ra.signing_metadata("carol", keys["carol"], NOW))
    assert ra.verify(md, keys.get, NOW) == "carol"
    assert ra.verify(md, keys.get, NOW + 1) == "carol"              # the same header again
    keys["carol"] = "rotated-secret-2"
    with pytest.raises(ra.AuthFailure) as e:
        ra.verify(md, keys.get, NOW)
    assert e.value.kind == ra.Failure.BAD_SIGNATURE
    keys["carol"] = "carol-secret-1"
    assert ra.verify(md, keys.get, NOW) == "carol"
    with pytest.raises(ra.AuthFailure) as e:
        ra.verify(md, keys.get, NOW + 901)                          # the remembered date went stale
    assert e.value.kind == ra.Failure.STALE_DATE
    del keys["carol"]
    with pytest.raises(ra.AuthFailure) as e:
        ra.verify(md, keys.get, NOW)
    assert e.value.kind == ra.Failure.UNKNOWN_KEY


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=16, max_size=16))
def test_parse_date_rejects_or_round_trips(s):
    try:
        t = ra.parse_date(s)
    except ValueError:
        return
    assert ra.format_date(t) == s or s[13:15] in ("60", "61")
