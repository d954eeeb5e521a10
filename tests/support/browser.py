"""The Chromium the console's browser tests drive (Playwright, never a downloaded browser).

Found as ``NBO_TEST_CHROMIUM``, else Debian's ``/usr/bin/chromium``, else ``chromium`` on
the PATH. Without one the browser tests skip naming it; a binary that is there but fails
to start is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

CHROMIUM_ENV = "NBO_TEST_CHROMIUM"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
MISSING = (
    f"no Chromium binary ({DEBIAN_CHROMIUM}; Debian: apt-get install chromium, or set "
    f"{CHROMIUM_ENV}): the console's browser tests need one"
)


def chromium_binary(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    for candidate in (
        env.get(CHROMIUM_ENV),
        DEBIAN_CHROMIUM,
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None
