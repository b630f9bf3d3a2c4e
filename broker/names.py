"""Name rules shared by the store and the broker server: topics, groups, tags, keys, properties.

Owns: validation of every user-supplied name that ends up inside a commitlog record or an index
key. Each `validate_*` raises `NameError_` (a `ValueError` with a stable `code` attribute naming the
wire ErrorCode) with a message that says what was wrong; it never changes the value.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[%A-Za-z0-9_-]{1,127}$")
MAX_TAG = 255
MAX_KEY = 255
MAX_PROPERTY = 4096
# bytes that frame the encoded properties inside a record (see record.py); forbidden in names
FORBIDDEN = ("\x00", "\x01", "\x02")


class NameError_(ValueError):  # noqa: N801 - do not shadow the builtin NameError
    """A bad name; `code` is the wire ErrorCode name (BAD_TOPIC_NAME, BAD_TAG, BAD_KEY, BAD_REQUEST)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def validate_topic(topic: str) -> None:
    """Topic names: 1..127 characters of letters, digits, '%', '_' and '-'."""
    if not isinstance(topic, str) or not _NAME.match(topic):
        raise NameError_("BAD_TOPIC_NAME", f"bad topic name {topic!r}: need 1..127 characters of "
                         "A-Z a-z 0-9 % _ -")


def validate_group(group: str) -> None:
    """Consumer/subscription group names follow the topic rule."""
    if not isinstance(group, str) or not _NAME.match(group):
        raise NameError_("BAD_REQUEST", f"bad group name {group!r}: need 1..127 characters of "
                         "A-Z a-z 0-9 % _ -")


def _bad_chars(s: str) -> bool:
    return any(c in s for c in FORBIDDEN)


def validate_tag(tag: str) -> None:
    """A message tag: empty (no tag) or up to 255 characters without '||', '*', spaces or control bytes."""
    if not isinstance(tag, str) or len(tag) > MAX_TAG or _bad_chars(tag) or "||" in tag or tag.strip() != tag \
            or tag == "*":
        raise NameError_("BAD_TAG", f"bad tag {tag!r}: at most {MAX_TAG} characters, no '||', no '*', "
                         "no surrounding spaces or control bytes")


def validate_key(key: str) -> None:
    """A message key: 1..255 characters without spaces or control bytes (keys are space-separated)."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY or _bad_chars(key) or " " in key:
        raise NameError_("BAD_KEY", f"bad message key {key!r}: 1..{MAX_KEY} characters, no spaces or "
                         "control bytes")


def validate_property(name: str, value: str) -> None:
    """A user property: a non-empty name and a value, neither holding the record's separator bytes."""
    if not isinstance(name, str) or not isinstance(value, str) or not 0 < len(name) <= MAX_KEY \
            or len(value) > MAX_PROPERTY or _bad_chars(name) or _bad_chars(value):
        raise NameError_("BAD_REQUEST", f"bad property {name!r}: name 1..{MAX_KEY} characters, value at most "
                         f"{MAX_PROPERTY}, neither may hold bytes 0x00-0x02")
