"""A user's credentials (access key + secret) and where tools read them from.

`Credentials(access_key, secret)` is what clients take (`credentials=`); a plain
`(access_key, secret)` tuple works too. Files and environment variables hold `ACCESS_KEY:SECRET`
on one line (the admin user a controller creates at bootstrap, the admin CLI's identity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret: str

    def __repr__(self) -> str:   # never print the secret
        return f"Credentials(access_key={self.access_key!r}, secret=***)"


def of(value: Credentials | tuple[str, str] | None) -> Credentials | None:
    """`Credentials`, an `(access_key, secret)` pair, or None (unsigned)."""
    if value is None or isinstance(value, Credentials):
        return value
    ak, sk = value
    return Credentials(str(ak), str(sk))


def parse(text: str, where: str) -> Credentials:
    """`ACCESS_KEY:SECRET` (surrounding whitespace ignored); ValueError naming `where` otherwise."""
    ak, sep, sk = text.strip().partition(":")
    if not sep or not ak or not sk:
        raise ValueError(f"{where}: expected ACCESS_KEY:SECRET on one line")
    return Credentials(ak.strip(), sk.strip())


def load_file(path: str) -> Credentials:
    try:
        return parse(Path(path).read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None


def from_env_or_file(path: str, env: str) -> Credentials | None:
    """From `path` if given, else from the environment variable `env`, else None."""
    if path:
        return load_file(path)
    value = os.environ.get(env, "")
    return parse(value, f"${env}") if value.strip() else None
