"""The outcomes report of a chosen window, with its two plots, for the console.

The figures are ``features.outcomes.outcomes_report`` (what ``nbo report outcomes``
prints) and the plots ``features.outcomes_html``'s (what ``--html`` embeds), drawn as PNG
and inlined in the page: nothing is fetched from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from core.pseudonym import pseudonymiser
from core.tables import read_tables
from features.outcomes import OutcomesError, ReportWindow, outcomes_report, parse_by
from features.outcomes_html import channel_plot, weekly_plot
from service.runtime import Runtime

MAX_WINDOW_DAYS = 366


@dataclass(frozen=True)
class OutcomesPage:
    report: dict[str, Any]
    weekly_png: str
    channel_png: str


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


def outcomes_page(runtime: Runtime, window: ReportWindow) -> OutcomesPage:
    """The report; raises ``OutcomesError`` (empty window, inconsistent data) or ``OSError``
    (no canonical tables under ``NBO_HOME``)."""
    settings = runtime.settings
    tables = read_tables(settings.data_dir)
    report = outcomes_report(
        runtime.redis,
        settings,
        tables.holdings,
        runtime.state.current.catalogue,
        pseudonymiser(settings),
        window,
    )
    return OutcomesPage(report, weekly_plot(report["weekly"]), channel_plot(report["by_channel"]))
