"""``nbo evaluate recommender --param NAME=VALUE``: overrides of RecommenderConfig."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import training.evaluate_recommender as evaluate_module
from cli.evaluate_recommender import apply_params
from cli.evaluate_recommender import recommender as evaluate_command
from training.recommender import RecommenderConfig


def test_good_values_are_converted_to_the_field_types() -> None:
    config, overrides = apply_params(
        RecommenderConfig(),
        ["factors=16", "max_leaf_nodes=31", "seed=107", "learning_rate=0.1"],
    )
    assert overrides == {"factors": 16, "max_leaf_nodes": 31, "seed": 107, "learning_rate": 0.1}
    assert (config.factors, config.max_leaf_nodes, config.seed) == (16, 31, 107)
    assert isinstance(config.factors, int) and isinstance(config.learning_rate, float)
    assert config.max_iter == RecommenderConfig().max_iter  # the rest keeps its defaults


def test_no_params_is_the_default_config() -> None:
    assert apply_params(RecommenderConfig(), []) == (RecommenderConfig(), {})


def test_an_unknown_name_is_refused_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown --param 'factor'; valid: k, factors, ") as e:
        apply_params(RecommenderConfig(), ["factor=16"])
    assert "max_leaf_nodes" in str(e.value) and "seed" in str(e.value)


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("factors=abc", r"--param factors='abc' is not a valid int"),
        ("factors=16.5", r"--param factors='16.5' is not a valid int"),
        ("learning_rate=fast", r"--param learning_rate='fast' is not a valid float"),
        ("learning_rate=nan", r"--param learning_rate='nan' is not a valid float"),
        ("factors", r"--param 'factors' is not NAME=VALUE"),
        ("=16", r"--param '=16' is not NAME=VALUE"),
    ],
)
def test_a_bad_value_is_refused_naming_the_parameter(assignment: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        apply_params(RecommenderConfig(), [assignment])
    assert "valid: k, factors" in str(e.value)


def test_a_repeated_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'seed' given more than once"):
        apply_params(RecommenderConfig(), ["seed=7", "seed=107"])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("False", False), ("1", True), ("0", False), ("yes", True), ("off", False)],
)
def test_bool_fields(raw: str, expected: bool) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class WithFlag:
        flag: bool = False
        depth: int = 3

    config, overrides = apply_params(WithFlag(), [f"flag={raw}"])
    assert config.flag is expected and overrides == {"flag": expected}
    with pytest.raises(ValueError, match=r"--param flag='maybe' is not a valid bool"):
        apply_params(WithFlag(), ["flag=maybe"])


def test_tuple_fields_take_a_comma_separated_list() -> None:
    config, _ = apply_params(
        RecommenderConfig(), ["categorical_inputs=region, acquisition_channel"]
    )
    assert config.categorical_inputs == ("region", "acquisition_channel")
    empty, _ = apply_params(RecommenderConfig(), ["categorical_inputs="])
    assert empty.categorical_inputs == ()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(evaluate_command)
    return app


ARGS = ["--train-until", "2016-02-28", "--target", "2016-03-28"]


def test_cli_refuses_a_bad_param_before_reading_the_panel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the panel was read")

    monkeypatch.setattr(evaluate_module, "import_santander", no_read)
    panel = str(tmp_path / "none.csv")
    for bad, said in [("factor=16", "unknown --param 'factor'"), ("factors=x", "factors='x'")]:
        out = CliRunner().invoke(_app(), ["--santander", panel, *ARGS, "--param", bad])
        assert out.exit_code == 2, out.output
        assert said in out.output and "valid: k, factors" in out.output
        assert "Traceback" not in out.output


def test_cli_passes_the_config_and_reports_the_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[RecommenderConfig] = []
    channels: list[str] = []

    def fake_evaluate(panel: Path, catalogue: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(args[2])
        channels.append(kwargs["served"].channel)
        evaluation = SimpleNamespace(metrics={"customers": 3.0, "map_at_7": 0.5})
        served = {"served_map_at_7": 0.25, "served_empty_share": 0.0, "served_channel": "app"}
        return SimpleNamespace(evaluation=evaluation, served=served)

    monkeypatch.setattr(evaluate_module, "evaluate_panel", fake_evaluate)
    params = ["--param", "factors=16", "--param", "max_leaf_nodes=31", "--param", "seed=107"]
    out = CliRunner().invoke(
        _app(), ["--santander", str(tmp_path / "p.csv"), *ARGS, *params, "--json"]
    )
    assert out.exit_code == 0, out.output
    body = json.loads(out.output)
    assert body["params"] == {"factors": 16, "max_leaf_nodes": 31, "seed": 107}
    assert body["customers"] == 3
    assert seen == [RecommenderConfig(factors=16, max_leaf_nodes=31, seed=107)]
    assert (body["served_map_at_7"], body["served_channel"], channels) == (0.25, "app", ["app"])


def test_cli_refuses_an_unknown_channel_before_reading_the_panel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the panel was read")

    monkeypatch.setattr(evaluate_module, "import_santander", no_read)
    out = CliRunner().invoke(
        _app(), ["--santander", str(tmp_path / "p.csv"), *ARGS, "--channel", "fax"]
    )
    assert out.exit_code == 2, out.output
    assert "--channel 'fax' is not a channel" in out.output


def test_cli_needs_exactly_one_source(tmp_path: Path) -> None:
    for sources in ([], ["--santander", str(tmp_path / "p.csv"), "--tables", str(tmp_path)]):
        out = CliRunner().invoke(_app(), [*sources, *ARGS])
        assert out.exit_code == 2, out.output
        assert "exactly one of --santander PANEL or --tables DIR" in out.output


def test_cli_names_a_missing_table_set(tmp_path: Path) -> None:
    out = CliRunner().invoke(_app(), ["--tables", str(tmp_path / "nowhere"), *ARGS])
    assert out.exit_code == 2, out.output
    assert "nowhere" in out.output and "Traceback" not in out.output
