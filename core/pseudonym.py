"""Pseudonymous customer ids: keyed HMAC-SHA256 of the bank's customer id.

Contact-policy state, feedback events and the decision audit trail are keyed by the
pseudonym, never by the raw id: a Redis dump or an exported file does not name customers,
yet whoever holds the key (the service, the ``nbo audit why`` command, a retraining job
that pseudonymises its customer table the same way) can find a given customer's rows.
Unlike a plain hash, a keyed HMAC cannot be reversed by hashing every possible id.

The key comes from ``NBO_PSEUDONYM_KEY``. The default is public and only for the demo: it
is accepted (so a fresh clone runs) with a warning logged once per process. Changing the
key orphans existing contact state and makes older audit records unfindable by customer.

Lives in ``core`` because the service, the offline exports and the CLI all need it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from functools import lru_cache

from core.settings import INSECURE_DEMO_PSEUDONYM_KEY, Settings

log = logging.getLogger(__name__)

PSEUDONYM_PATTERN = r"^[0-9a-f]{64}$"


class Pseudonymiser:
    """Turn customer ids into pseudonyms with one secret key."""

    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("pseudonym key must not be empty")
        # The key's HMAC state, copied per id: the key is absorbed once, and no call looks
        # the digest up by name (OpenSSL 3 fetches it on every one-shot ``hmac.digest``;
        # on the request path, its caches cold, that fetch cost ~20 us of a ~500 us request).
        self._keyed = hmac.new(key.encode(), digestmod=hashlib.sha256)
        self._key = key
        self.insecure = key == INSECURE_DEMO_PSEUDONYM_KEY

    def __reduce__(self) -> tuple[type[Pseudonymiser], tuple[str]]:
        # An HMAC state does not pickle; a batch job's worker processes get the key.
        return (Pseudonymiser, (self._key,))

    def __call__(self, customer_id: str) -> str:
        """64 lowercase hex characters; the same id and key always give the same pseudonym."""
        keyed = self._keyed.copy()
        keyed.update(customer_id.encode())
        return keyed.hexdigest()

    def __repr__(self) -> str:  # never print the key
        return f"Pseudonymiser(insecure={self.insecure})"


def pseudonymiser(settings: Settings) -> Pseudonymiser:
    """The pseudonymiser of ``settings`` (warns once when the demo key is in force)."""
    return _cached(settings.pseudonym_key.get_secret_value())


@lru_cache(maxsize=4)
def _cached(key: str) -> Pseudonymiser:
    made = Pseudonymiser(key)
    if made.insecure:
        log.warning(
            "NBO_PSEUDONYM_KEY is not set: pseudonymous customer ids use the public demo key "
            "and protect nothing; set a secret key before real customer data is used"
        )
    return made
