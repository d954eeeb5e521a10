"""``nbo report outcomes`` end to end: planted period in a real Redis and canonical tables on
disk; bad input exits 2 with one line naming the problem and writes nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from cli.main import app
from core.catalogue import Catalogue
from core.pseudonym import Pseudonymiser
from core.settings import Settings
from core.tables import contract_products, write_tables
from tests.support.auth import TEST_PSEUDONYM_KEY
from tests.support.outcomes_data import EXPECTED, plant, planted_tables

PSEUDONYMISE = Pseudonymiser(TEST_PSEUDONYM_KEY.get_secret_value())
PERIOD = ["report", "outcomes", "--since", "2026-11-02", "--until", "2026-11-15"]


@pytest.fixture
def planted(
    redis_client: redis.Redis,
    settings: Settings,
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """The planted period, and the environment that points ``nbo`` at it."""
    write_tables(
        planted_tables(catalogue),
        settings.data_dir,
        [p.id for p in catalogue.holdable],
        contract_products(catalogue),
    )
    plant(redis_client, settings, PSEUDONYMISE)
    for name, value in {
        "NBO_HOME": str(settings.home),
        "NBO_REDIS_URL": str(settings.redis_url),
        "NBO_AUDIT_PREFIX": settings.audit_prefix,
        "NBO_EVENTS_PREFIX": settings.events_prefix,
        "NBO_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY.get_secret_value(),
    }.items():
        monkeypatch.setenv(name, value)
    return settings


def test_json_report_holds_the_hand_worked_figures(planted: Settings) -> None:
    result = CliRunner().invoke(app, [*PERIOD, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for g in report["groups"]:
        _, _, shown, accepted, with_offers, took = EXPECTED[g["group"]["variant"]]
        assert (g["offers_shown"], g["accepted"]) == (shown, accepted)
        assert (g["customers_with_offers"], g["customers_took_up"]) == (with_offers, took)


def test_text_report_and_html_with_embedded_plots(planted: Settings, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "outcomes.html"
    result = CliRunner().invoke(app, [*PERIOD, "--by", "variant,channel", "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert "variant=champion channel=app: decisions 3" in result.stdout
    assert "variant=challenger channel=app: decisions 3, customers 2, shown 2, accepted 1" in (
        result.stdout
    )
    assert "uplift variant=champion channel=app vs control: -50.0%" in result.stdout
    page = out.read_text()
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) == 2  # take-up by week, by channel
    for image in images:
        assert base64.b64decode(image.split('"')[0]).startswith(b"\x89PNG")
    assert "http" not in page  # self-contained
    assert [p.name for p in out.parent.iterdir()] == ["outcomes.html"]  # no temp file left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "variant,colour"], "--by colour: unknown key"),
        (["--since", "2026-11-15", "--until", "2026-11-02"], "dates are reversed"),
        (["--since", "2026-09-01", "--until", "2026-09-30"], "empty window"),
        (["--since", "2026-11-31"], "is not a date"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    planted: Settings, tmp_path: Path, args: list[str], message: str
) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    out = folder / "outcomes.html"
    out.write_text("the previous report")
    result = CliRunner().invoke(app, [*PERIOD, *args, "--html", str(out)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert out.read_text() == "the previous report"
    assert [p.name for p in folder.iterdir()] == ["outcomes.html"]


def test_an_event_citing_no_decision_exits_2(
    planted: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    plant(
        redis_client,
        planted,
        PSEUDONYMISE,
        decisions=[],
        accepted=[("e9", "zz", "funds", "2026-11-09T10:00:00+00:00")],
    )
    out = tmp_path / "outcomes.html"
    result = CliRunner().invoke(app, [*PERIOD, "--html", str(out)])
    assert result.exit_code == 2
    assert "1 event(s) cite no recorded decision" in result.stderr
    assert not out.exists()
