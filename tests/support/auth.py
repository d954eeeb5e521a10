"""The test API key and pseudonym key: every ``settings`` fixture configures them; clients
send ``AUTH``.

``TestClient(create_app(settings), headers=AUTH)`` is a client that passes authentication
with every scope (``service/api/auth.py``); tests of authentication itself make their own keys.
With both keys set the settings pass the production guard (``Settings.refuse_unsafe``), as a
real deployment's must, so the tests need no development mode.
"""

from __future__ import annotations

from pydantic import SecretStr

from core.api_keys import SCOPES, ApiKeyEntry, hash_key

TEST_API_KEY = "nbo_test-key-with-every-scope"
TEST_API_KEYS = [ApiKeyEntry(name="tests", sha256=hash_key(TEST_API_KEY), scopes=SCOPES)]
AUTH = {"X-API-Key": TEST_API_KEY}
TEST_PSEUDONYM_KEY = SecretStr("test-pseudonym-key-not-the-public-demo-one")
"""A pseudonym key that is not the public demo key (test data only)."""
