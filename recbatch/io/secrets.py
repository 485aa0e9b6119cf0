"""Passwords of export targets: read from an environment variable or a file, never from the TOML.

The password only travels to where it is used (the JDBC connection properties, the Redis
client); any message that may quote a server's words is passed through `redact` first.
"""

from __future__ import annotations

import os
from pathlib import Path

from recbatch.errors import ConfigError

MASK = "***"


def read_password(section: str, env_name: str | None, file: str | None) -> str | None:
    """The password named by `<section>.password_env` or `.password_file` (none when neither is set).

    A named variable that is unset, or a named file that is missing or empty, is a
    ConfigError naming the setting, never the value.
    """
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise ConfigError(
                f"{section}.password_env names {env_name}, which is not set: export it before running"
            )
        return value
    if file:
        path = Path(file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{section}.password_file {path} cannot be read: {exc.strerror}") from None
        if not lines or not lines[0]:
            raise ConfigError(f"{section}.password_file {path} is empty: put the password on its first line")
        return lines[0]
    return None


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` masked."""
    return text.replace(secret, MASK) if secret else text
