"""The outcomes report as one self-contained HTML file: tables and two plots (take-up by
variant per week, take-up by channel and variant) embedded as base64 PNG.

Why a single file: it can be mailed or attached to a ticket and opens offline. It is
written to a temporary file in the target folder and renamed into place, so a failure
never leaves a partial report.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported when a report is drawn:
    the rest of the command line never pays for it)."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("--html needs matplotlib (pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rate(value: dict[str, float] | None) -> str:
    if value is None:
        return "-"
    return f"{value['estimate']:.1%} [{value['low']:.1%}, {value['high']:.1%}]"


def _diff(value: dict[str, float] | None) -> str:
    if value is None:
        return "-"
    return f"{value['estimate']:+.1%} [{value['low']:+.1%}, {value['high']:+.1%}]"


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def weekly_plot(weekly: list[dict[str, Any]]) -> str:
    figure, axes = _pyplot().subplots(figsize=(7, 3.2))
    for variant in sorted({w["variant"] for w in weekly}):
        points = [w for w in weekly if w["variant"] == variant and w["take_up_rate"]]
        axes.plot(
            [p["week"] for p in points],
            [p["take_up_rate"]["estimate"] for p in points],
            marker="o",
            label=variant,
        )
    axes.set_title("Take-up by variant, week of decision")
    axes.set_ylabel("take-up rate")
    axes.legend()
    figure.autofmt_xdate()
    return _png(figure)


def channel_plot(by_channel: list[dict[str, Any]]) -> str:
    channels = sorted({c["channel"] for c in by_channel})
    variants = sorted({c["variant"] for c in by_channel})
    figure, axes = _pyplot().subplots(figsize=(7, 3.2))
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        rates = {c["channel"]: c["take_up_rate"] for c in by_channel if c["variant"] == variant}
        axes.bar(
            [x + i * width for x in range(len(channels))],
            [rates[ch]["estimate"] if rates.get(ch) else 0.0 for ch in channels],
            width,
            label=variant,
        )
    axes.set_xticks([x + width * (len(variants) - 1) / 2 for x in range(len(channels))])
    axes.set_xticklabels(channels)
    axes.set_title("Take-up by channel and variant")
    axes.set_ylabel("take-up rate")
    axes.legend()
    return _png(figure)


def render_html(report: dict[str, Any]) -> str:
    """The whole report as an HTML page (no external resource)."""
    keys = report["by"]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    rows = []
    for g in report["groups"]:
        cells = "".join(f"<td>{html.escape(g['group'][k])}</td>" for k in keys)
        rows.append(
            f"<tr>{cells}<td>{g['decisions']}</td><td>{g['customers']}</td>"
            f"<td>{g['offers_shown']}</td><td>{g['accepted']}</td>"
            f"<td>{_rate(g['acceptance_rate'])}</td><td>{g['customers_took_up']} / "
            f"{g['customers_with_offers']}</td><td>{_rate(g['take_up_rate'])}</td></tr>"
        )
    uplift = []
    for u in report["uplift"]:
        label = ", ".join(f"{k}={v}" for k, v in u["group"].items())
        note = html.escape(u.get("note", ""))
        uplift.append(
            f"<tr><td>{html.escape(label)}</td><td>{_diff(u['uplift'])}</td><td>{note}</td></tr>"
        )
    title = f"Outcomes {report['since']} to {report['until']}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Take-up within {report["window_days"]} days of the decision; holdings known until
{html.escape(str(report["holdings_until"]))}{
        ""
        if report["take_up_complete"]
        else " (incomplete: later take-up is not yet in the holdings)"
    }; control basis:
{html.escape(", ".join(report["control_basis"]) or "no control decisions")}.
Rates with their 95% Wilson interval; uplift with Newcombe's interval.</p>
<table><tr>{head}<th>decisions</th><th>customers</th><th>offers shown</th><th>accepted</th>
<th>acceptance rate</th><th>took up / with offers</th><th>take-up rate</th></tr>
{"".join(rows)}</table>
<h2>Uplift against control</h2>
<table><tr><th>group</th><th>uplift (take-up difference)</th><th>note</th></tr>
{"".join(uplift)}</table>
<h2>Take-up over time</h2><img alt="take-up by variant per week"
src="data:image/png;base64,{weekly_plot(report["weekly"])}">
<h2>Take-up by channel</h2><img alt="take-up by channel and variant"
src="data:image/png;base64,{channel_plot(report["by_channel"])}">
</body></html>
"""


def write_html(report: dict[str, Any], out: Path) -> None:
    """Render ``report`` and write it to ``out`` atomically (temporary file + rename)."""
    page = render_html(report)  # rendered before anything touches the disk
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
