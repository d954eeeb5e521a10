"""The outcomes report of a chosen window, with its two plots, for the console.

The figures are ``features.outcomes.outcomes_report`` (what ``nbo report outcomes``
prints) and the plots ``features.outcomes_html``'s (what ``--html`` embeds), served by the
console as PNG images of their own (``/console/outcomes/weekly.png``), so the page's
tables do not wait for matplotlib. A report is kept for ``REPORT_SECONDS`` per window
(:class:`ReportCache`): the page and its two images compute it once, and a report a
minute old is as good as a fresh one for a period of days; the page says when it was
computed.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from core.pseudonym import pseudonymiser
from core.tables import TABLE_FILES, TablesMissingError
from features.outcomes import OutcomesError, ReportWindow, outcomes_report, parse_by
from features.outcomes_html import channel_plot, weekly_plot
from service.runtime import Runtime

MAX_WINDOW_DAYS = 366
REPORT_SECONDS = 60.0
PLOTS = {"weekly": ("weekly", weekly_plot), "channel": ("by_channel", channel_plot)}


class OutcomesFormError(ValueError):
    """A bad form field; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_window(since: str, until: str, window_days: str, by: str) -> ReportWindow:
    try:
        start = date.fromisoformat(since)
    except ValueError:
        raise OutcomesFormError("since", f"{since!r} is not a date YYYY-MM-DD") from None
    try:
        end = date.fromisoformat(until)
    except ValueError:
        raise OutcomesFormError("until", f"{until!r} is not a date YYYY-MM-DD") from None
    if end < start:
        raise OutcomesFormError("until", "is before since")
    if (end - start).days > MAX_WINDOW_DAYS:
        raise OutcomesFormError("until", f"the window is longer than {MAX_WINDOW_DAYS} days")
    if not window_days.isdigit() or not 1 <= int(window_days) <= 365:
        raise OutcomesFormError("window_days", "must be a whole number of days from 1 to 365")
    try:
        return ReportWindow(since=start, until=end, window_days=int(window_days), by=parse_by(by))
    except (ValueError, OutcomesError) as exc:
        raise OutcomesFormError("by", str(exc)) from None


@dataclass
class Computed:
    report: dict[str, Any]
    at: datetime
    plots: dict[str, bytes] = field(default_factory=dict)


def read_holdings(runtime: Runtime) -> pd.DataFrame:
    """The canonical holdings (the only table the report needs) of ``NBO_HOME``."""
    path = runtime.settings.data_dir / TABLE_FILES["holdings"]
    if not path.exists():
        raise TablesMissingError(
            f"no canonical tables in {runtime.settings.data_dir} (missing {path}); "
            "run `nbo data generate` or `nbo data import-santander` first"
        )
    holdings = pd.read_parquet(path)
    holdings["month"] = pd.to_datetime(holdings["month"])
    return holdings


class ReportCache:
    """The last few reports, each for ``REPORT_SECONDS``, keyed by where it was read from
    and the window."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, Computed]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, runtime: Runtime, window: ReportWindow) -> Computed:
        """The report of ``window``; raises ``OutcomesError`` (empty window, inconsistent
        data), ``OSError`` (no canonical tables under ``NBO_HOME``) or Redis errors."""
        settings = runtime.settings
        key = (settings.audit_prefix, settings.events_prefix, str(settings.data_dir), window)
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and now - found[0] < REPORT_SECONDS:
                return found[1]
        report = outcomes_report(
            runtime.redis,
            settings,
            read_holdings(runtime),
            runtime.state.current.catalogue,
            pseudonymiser(settings),
            window,
        )
        computed = Computed(report, datetime.now(UTC))
        with self._lock:
            self._entries[key] = (now, computed)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return computed

    def plot(self, runtime: Runtime, window: ReportWindow, name: str) -> bytes:
        """One of :data:`PLOTS` of the window's report, as PNG bytes (drawn once)."""
        computed = self.get(runtime, window)
        if name not in computed.plots:
            part, draw = PLOTS[name]
            computed.plots[name] = base64.b64decode(draw(computed.report[part]))
        return computed.plots[name]


reports = ReportCache()
