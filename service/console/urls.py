"""Where the console lives; read by the API-key guard, which leaves these paths to the
console's own session check (``service.console.session``)."""

from __future__ import annotations

CONSOLE_URL = "/console"
LOGIN_URL = f"{CONSOLE_URL}/login"
