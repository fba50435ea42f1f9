"""Masking secrets wherever configuration is shown."""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["MASK", "is_secret_key", "redact"]

MASK: Final = "**********"
_SECRET_WORDS: Final = ("password", "passwd", "secret", "credential", "apikey", "privatekey")
_DSN_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*:)[^\s@/?#]+(?=@)")


def is_secret_key(key: str) -> bool:
    """Whether a config key name suggests a secret (password, token, api_key, ...)."""
    lowered = key.lower()
    squashed = lowered.replace("_", "").replace("-", "")
    if lowered.endswith(("_key", "token")) or any(word in squashed for word in _SECRET_WORDS):
        return True
    # "token" alone would also hide harmless keys such as "max_tokens".
    return "token" in re.split(r"[^a-z0-9]+", lowered)


def _mask_text(value: Any) -> Any:
    """Hide every piece of text below a secret-looking key; numbers and flags stay readable
    (`allow_credentials: true` and `password_hashing: {time_cost: 3}` are settings)."""
    if isinstance(value, dict):
        return {k: _mask_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_text(item) for item in value]
    if isinstance(value, str | bytes):
        return MASK
    return value


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_text(v) if is_secret_key(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return _DSN_PASSWORD.sub(rf"\g<head>{MASK}", value)
    return value
