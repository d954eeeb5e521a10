"""API keys: their scopes, how one is configured (hashed) and how a new one is made.

A key is 32 random bytes (``nbo_`` + url-safe base64), shown once when it is made; the
configuration (``NBO_API_KEYS``) holds only its SHA-256. A fast, unsalted hash is enough
here because the keys are random with 256 bits of entropy, not passwords a person chose:
nobody can search that space, and a plain digest lets the service find a presented key with
one dictionary lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal, get_args

from limits import parse
from pydantic import BaseModel, ConfigDict, Field, field_validator

ApiScope = Literal["recommend", "events", "audit", "admin"]
SCOPES: tuple[ApiScope, ...] = get_args(ApiScope)
KEY_PREFIX = "nbo_"


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as configured in ``NBO_API_KEYS``."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (43 url-safe characters after the ``nbo_`` prefix)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_rate_limit(value: str | None) -> str | None:
    """``"100/second"``-style limit, validated; ``None``, ``""`` or ``"off"`` mean no limit."""
    if value is None or value.strip().lower() in ("", "off", "none"):
        return None
    try:
        parse(value)
    except ValueError:
        raise ValueError(
            f"rate limit {value!r} is not like '100/second' or '6000/minute'"
        ) from None
    return value.strip()


class ApiKeyEntry(BaseModel):
    """One configured key: who holds it, its hash, what it may call, its own rate limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Who holds the key (shown in 403 messages and logs; not secret).",
    )
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the key (`nbo keys hash`)."
    )
    scopes: tuple[ApiScope, ...] = Field(min_length=1, description="Routes the key may call.")
    rate_limit: str | None = Field(
        None, description="Overrides NBO_RATE_LIMIT for this key, e.g. '50/second' or 'off'."
    )

    @field_validator("rate_limit")
    @classmethod
    def _valid_limit(cls, value: str | None) -> str | None:
        return value if value is None else parse_rate_limit(value) or "off"
