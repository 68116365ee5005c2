"""Secrets named by the config (an environment variable or a file), read at each use, never kept.

The config says *where* a secret is — `auth_env: CORP_PROXY_AUTH`, `password_file: /run/…` —
never what it is, so no repr, log line, stored result or export can carry it. Reading it at
each use lets an operator rotate a file without a restart. The errors name the source, never
the value.
"""

from __future__ import annotations

import os
from pathlib import Path


class CredentialsUnavailable(Exception):
    """A configured secret could not be read; the message names the source, never a secret."""


def read_secret(*, env: str | None = None, file: str | None = None, what: str = "secret") -> str | None:
    """The first line of `file`, or the value of `env`; None when neither is configured."""
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise CredentialsUnavailable(f"{what}: environment variable {env} is not set")
        return value
    if file is not None:
        try:
            return (Path(file).read_text(encoding="utf-8").splitlines() or [""])[0]
        except (OSError, UnicodeDecodeError) as e:
            raise CredentialsUnavailable(f"{what}: cannot read {file}: {getattr(e, 'strerror', None) or type(e).__name__}") from None
    return None


def user_password(*, env: str | None = None, file: str | None = None, what: str = "credentials") -> tuple[str, str] | None:
    """USER:PASSWORD from `env` or `file`, split; None when neither is configured."""
    raw = read_secret(env=env, file=file, what=what)
    if raw is None:
        return None
    user, sep, password = raw.partition(":")
    if not sep:
        source = f"environment variable {env}" if env is not None else file
        raise CredentialsUnavailable(f"{what}: {source} does not hold USER:PASSWORD")
    return user, password
