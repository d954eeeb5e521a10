"""The test API key: every ``settings`` fixture configures it; clients send ``AUTH``.

``TestClient(create_app(settings), headers=AUTH)`` is a client that passes authentication
with every scope (``service/api/auth.py``); tests of authentication itself make their own keys.
"""

from __future__ import annotations

from core.api_keys import SCOPES, ApiKeyEntry, hash_key

TEST_API_KEY = "nbo_test-key-with-every-scope"
TEST_API_KEYS = [ApiKeyEntry(name="tests", sha256=hash_key(TEST_API_KEY), scopes=SCOPES)]
AUTH = {"X-API-Key": TEST_API_KEY}
