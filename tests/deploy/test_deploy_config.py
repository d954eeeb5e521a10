"""The deployment files in deploy/: Prometheus config and alert rules (checked and unit-tested
with promtool), the Grafana dashboard (linted, and every metric it charts must be one the
service really exports), docker compose and the Dockerfile.

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs it); the tests
that need it skip with that reason when it is missing.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.embedded_redis import REDIS_PERSISTENCE, persistence_args
from core.settings import Settings
from service.app import create_app
from service.infra.metrics import LABEL_DOMAINS, ServiceMetrics
from tests.support.auth import AUTH, TEST_API_KEYS, TEST_PSEUDONYM_KEY
from tests.support.paths import REPO_ROOT
from tests.support.redis_state import delete_prefixed
from tests.support.registry import empty_store

DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "nbo.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
COMPOSE = DEPLOY / "docker-compose.yml"

_METRIC_NAME = re.compile(r"\bnbo_[a-z0-9_]+\b")
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; .ci/run installs it)")
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


# --- Prometheus ----------------------------------------------------------------------------


def test_prometheus_config_is_valid() -> None:
    result = run_promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid() -> None:
    result = run_promtool("check", "rules", PROMETHEUS / "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    """deploy/prometheus/alerts_test.yml: each alert fires (or stays quiet) when it should."""
    result = run_promtool("test", "rules", PROMETHEUS / "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_can_fail(tmp_path: Path) -> None:
    """Guard against a vacuous test file: a loosened budget must break the unit tests."""
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    rules = tmp_path / "alerts.yml"
    loosened = rules.read_text().replace("p99_5m > 0.05", "p99_5m > 0.5")
    assert loosened != rules.read_text()
    rules.write_text(loosened)
    result = run_promtool("test", "rules", tmp_path / "alerts_test.yml")
    assert result.returncode != 0
    assert "NboLatencyP99OverBudget" in result.stdout + result.stderr


def test_every_required_alert_exists() -> None:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    alerts = {rule["alert"]: rule["expr"] for g in groups for rule in g["rules"] if "alert" in rule}
    assert {
        "NboLatencyP99OverBudget",
        "NboHighErrorRate",
        "NboHighDegradedRate",
        "NboFeaturesStale",
        "NboModelReloadFailed",
    } <= alerts.keys()
    assert "nbo_model_reloads_total" in alerts["NboModelReloadFailed"]
    assert "nbo_feature_set_age_seconds" in alerts["NboFeaturesStale"]


# --- label values: alerts match only what the service emits ----------------------------------

_SELECTOR = re.compile(r"\b(nbo_[a-z0-9_]+)\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def matched_values(expr: str) -> list[tuple[str, str, str, str]]:
    """``(metric, label, operator, value)`` of every label matcher in a PromQL expression."""
    return [
        (metric, *matcher)
        for metric, body in _SELECTOR.findall(expr)
        for matcher in _MATCHER.findall(body)
    ]


def values_outside_domain(metric: str, label: str, op: str, value: str) -> list[str]:
    """The literal values a matcher names that the service never emits (``LABEL_DOMAINS``).

    A positive regex matcher must be a ``|`` list of literal values, each one emitted."""
    domain = LABEL_DOMAINS.get(metric, {}).get(label)
    if domain is None:
        return []
    literals = value.split("|") if op in ("=~", "!~") else [value]
    return [v for v in literals if v not in domain]


def _alert_exprs() -> dict[str, str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return {
        rule.get("alert") or rule["record"]: rule["expr"] for g in groups for rule in g["rules"]
    }


def test_alert_label_values_are_ones_the_service_emits() -> None:
    """Every closed label value an alert matches is one the service counts: an alert on
    ``outcome="failed"`` of the reloads (which counts swapped/refused/removed/error) could
    never fire."""
    wrong = {
        name: bad
        for name, expr in _alert_exprs().items()
        for matcher in matched_values(expr)
        if (bad := values_outside_domain(*matcher))
    }
    assert not wrong, f"alerts match label values the service never emits: {wrong}"


def test_alert_unit_tests_feed_series_the_service_emits() -> None:
    """The promtool unit tests feed only label values the service emits: a test fed
    ``outcome="failed"`` would pass for an alert that cannot fire in production."""
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    wrong = [
        (series["series"], bad)
        for case in tests
        for series in case["input_series"]
        for matcher in matched_values(series["series"])
        if (bad := values_outside_domain(*matcher))
    ]
    assert not wrong, f"alerts_test.yml feeds label values the service never emits: {wrong}"


def test_the_label_check_catches_a_value_the_service_does_not_emit() -> None:
    """The check itself can fail: the old reload alert is caught, the current one is not."""
    old = 'increase(nbo_model_reloads_total{outcome="failed"}[15m])'
    assert values_outside_domain(*matched_values(old)[0]) == ["failed"]
    assert values_outside_domain(*matched_values(_alert_exprs()["NboModelReloadFailed"])[0]) == []


def _string_args(function: str, position: int) -> set[str]:
    """String constants passed at ``position`` to calls of ``function`` anywhere in service/."""
    found: set[str] = set()
    for path in (REPO_ROOT / "service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or len(node.args) <= position:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[position]
            if name == function and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
    return found


def test_label_domains_are_what_the_service_code_emits() -> None:
    """``LABEL_DOMAINS`` is read off the code, not copied: the outcomes the model watcher
    builds (but "unchanged", never counted) and the audit outcomes the service reports."""
    reloads = _string_args("ReloadResult", 3) - {"unchanged"}
    assert reloads == set(LABEL_DOMAINS["nbo_model_reloads_total"]["outcome"])
    audit = _string_args("_on_outcome", 0) | _string_args("observe_audit", 0)
    assert audit == set(LABEL_DOMAINS["nbo_audit_records_total"]["outcome"])


def test_counting_an_undeclared_label_value_raises() -> None:
    """A new outcome cannot reach /metrics unless it is declared (and so checked above)."""
    metrics = ServiceMetrics()
    metrics.observe_reload("nbo-recommender", "refused")
    with pytest.raises(ValueError, match="failed"):
        metrics.observe_reload("nbo-recommender", "failed")
    with pytest.raises(ValueError, match="lost"):
        metrics.observe_audit("lost", 1)


# --- what the service exports ----------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_metrics(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> set[str]:
    """Sample names a real app exposes on /metrics (after one degraded recommendation)."""
    home = tmp_path_factory.mktemp("deploy-metrics")
    prefix = f"nbotest:deploy:{uuid.uuid4().hex[:12]}"  # every key it writes, deleted after
    settings = Settings(
        home=home / "home",
        redis_url=redis_url,
        mlflow_tracking_uri=empty_store(home / "mlflow.db"),
        feature_prefix=f"{prefix}:fs",
        contact_prefix=f"{prefix}:contact",
        events_prefix=f"{prefix}:events",
        audit_prefix=f"{prefix}:audit",
        api_keys=TEST_API_KEYS,
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )
    try:
        with TestClient(create_app(settings), headers=AUTH) as client:
            answer = client.post(
                "/v1/recommendations", json={"customer_id": "C0000001", "channel": "app", "k": 3}
            )
            assert answer.status_code == 200
            text = client.get("/metrics").text
    finally:
        cleaner = redis.Redis.from_url(redis_url)
        delete_prefixed(cleaner, prefix)
        cleaner.close()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_exported_metrics_fixture_sees_the_service_metrics(exported_metrics: set[str]) -> None:
    assert "nbo_http_request_duration_seconds_bucket" in exported_metrics
    assert "nbo_feature_set_age_seconds" in exported_metrics
    assert "nbo_no_such_metric" not in exported_metrics


def _alert_metric_names() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return {
        name for g in groups for rule in g["rules"] for name in _METRIC_NAME.findall(rule["expr"])
    }


def test_alerts_reference_exported_metrics(exported_metrics: set[str]) -> None:
    missing = _alert_metric_names() - exported_metrics
    assert not missing, f"alerts.yml uses metrics the service does not export: {missing}"


# --- Grafana ---------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panel_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]


def test_dashboard_structure() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    datasource_uids = {d["uid"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['title']!r} is wider than the grid"
        assert panel["datasource"]["uid"] in datasource_uids
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))


def test_dashboard_shows_what_operators_need() -> None:
    exprs = " ".join(_panel_exprs())
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, " in exprs
    for metric in (
        "nbo_http_requests_total",
        "nbo_recommendations_degraded_total",
        "nbo_model_info",
        "nbo_feature_set_age_seconds",
    ):
        assert metric in exprs


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel query, with Grafana's interval variable filled in, passes promtool."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": e.replace("$__rate_interval", "5m")}
                    for n, e in enumerate(_panel_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run_promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_charts_exported_metrics(exported_metrics: set[str]) -> None:
    charted = {name for e in _panel_exprs() for name in _METRIC_NAME.findall(e)}
    assert charted, "no nbo_* metric found in the dashboard"
    missing = charted - exported_metrics
    assert not missing, f"the dashboard charts metrics the service does not export: {missing}"


# --- compose and image -----------------------------------------------------------------------


def test_compose_has_the_stack() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"redis", "postgres", "mlflow", "nbo", "prometheus", "grafana"} <= services.keys()
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith(
        "postgresql+psycopg2://"
    )
    assert any("mlflow-artifacts" in v for v in services["mlflow"]["volumes"])
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_compose_config_resolves() -> None:
    """``docker compose config`` (client only, no engine needed), when compose is installed."""
    docker = shutil.which("docker")
    probe = (
        subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if docker
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    assert docker is not None
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) >= 2
    assert "COPY --from=build" in text
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*", text, flags=re.MULTILINE)
    assert "/healthz" in text


def redis_options(command: list[str]) -> dict[str, str]:
    """``redis-server --name value [value...]`` arguments as ``{name: "value ..."}``."""
    options: dict[str, list[str]] = {}
    name = None
    for word in command[1:]:
        if word.startswith("--"):
            name = word[2:]
            options[name] = []
        elif name is not None:
            options[name].append(word)
    return {key: " ".join(values) for key, values in options.items()}


def test_compose_redis_persists_as_the_embedded_one_and_the_fault_tests() -> None:
    """One source of truth (``REDIS_PERSISTENCE``) for the compose Redis, the embedded
    one (tests/core/test_embedded_redis.py) and the Redis the fault tests kill
    (tests/support/fault_redis.py)."""
    command = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    options = redis_options(command)
    assert {name: options.get(name) for name in REDIS_PERSISTENCE} == REDIS_PERSISTENCE
    assert redis_options(["redis-server", *persistence_args()]) == REDIS_PERSISTENCE
    assert REDIS_PERSISTENCE["appendonly"] == "yes"
    assert REDIS_PERSISTENCE["appendfsync"] in ("everysec", "always")
