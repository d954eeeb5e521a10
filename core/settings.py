"""One settings object for the whole project (environment prefix ``NBO_``)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.api_keys import ApiKeyEntry, parse_rate_limit

PACKAGE_DIR = Path(__file__).resolve().parent

INSECURE_DEMO_PSEUDONYM_KEY = "insecure-demo-key-set-NBO_PSEUDONYM_KEY"
"""The default pseudonym key: public, so pseudonyms made with it protect nothing."""


class Environment(StrEnum):
    """Where the service runs: ``production`` (the default) refuses unsafe settings."""

    PRODUCTION = "production"
    DEVELOPMENT = "development"


class UnsafeSettingsError(ValueError):
    """Settings the service must not start with outside development; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            "refusing to start with unsafe settings (NBO_ENVIRONMENT=production):\n"
            f"{lines}\n"
            "  (for local development only: NBO_ENVIRONMENT=development)"
        )


def contact_horizon_seconds(window_days: int, suppression_days: int) -> int:
    """How far back any contact rule looks (the impression window or the decline pause):
    the service reads and keeps no older contact history, and offline jobs that rebuild
    that history (``training.response_logged``) cut it at the same point."""
    return max(window_days, suppression_days, 1) * 86_400


class Settings(BaseSettings):
    """Configuration read from ``NBO_*`` environment variables (or a ``.env`` file).

    Every path defaults to a folder under ``home`` so that a fresh clone runs with no
    configuration at all (the "embedded default": SQLite MLflow, a local Redis server).
    """

    # hide_input_in_errors: a rejected value (a Redis URL with its password) is not echoed.
    model_config = SettingsConfigDict(
        env_prefix="NBO_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    environment: Environment = Field(
        Environment.PRODUCTION,
        description="production refuses to serve with the demo pseudonym key, without API "
        "keys or with auth disabled; development (set by `nbo demo`) allows them.",
    )
    home: Path = Field(Path("var"), description="Working folder for data, MLflow and Redis.")
    redis_url: str | None = Field(
        None,
        description="External Redis URL; redis+cluster://host:port[,host:port]/ for a Redis "
        "Cluster; unset starts the embedded Redis server.",
    )
    embedded_redis_port: int = Field(6399, description="TCP port of the embedded Redis server.")
    redis_timeout_seconds: float = Field(0.25, description="Socket timeout for Redis calls.")
    # --- Redis outage on the service (service/infra/breaker.py, README "Failure behaviour") ---
    redis_request_timeout_ms: float = Field(
        100.0,
        gt=0,
        description="Socket and connect timeout of the service's Redis calls (jobs use "
        "redis_timeout_seconds).",
    )
    redis_breaker_failures: int = Field(
        5, ge=1, description="Consecutive Redis connection failures or timeouts that open it."
    )
    redis_breaker_reset_seconds: float = Field(
        2.0, gt=0, description="How long the open breaker fails Redis calls fast before a probe."
    )
    mlflow_request_timeout_seconds: int = Field(
        10, ge=1, description="The service's timeout per MLflow HTTP request (then: cache)."
    )
    mlflow_request_retries: int = Field(
        1, ge=0, description="The service's retries of a failed MLflow HTTP request."
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; unset uses SQLite under home/mlflow."
    )
    catalogue_path: Path = Field(
        PACKAGE_DIR / "catalogue.yaml", description="Product catalogue YAML file."
    )
    moments_path: Path = Field(
        PACKAGE_DIR / "moments.yaml",
        description="Customer-moment rules: tier thresholds, upgrade, lifecycle (YAML).",
    )
    feature_prefix: str = Field("nbo:fs", description="Redis key prefix of feature sets.")
    feature_versions_kept: int = Field(
        2, description="Materialized feature-set versions kept in Redis (current included)."
    )
    feature_pointer_refresh_seconds: float = Field(
        5.0, description="How often the service re-reads the current feature-set pointer."
    )
    precomputed_scores: bool = Field(
        True,
        description="Serve the precomputed scores of `nbo score recommendations` when they "
        "match the feature set and models (false: score every request online).",
    )
    risk_assessment_validity_days: int = Field(
        730, description="A risk assessment older than this is expired (lowest risk only)."
    )
    churn_horizon_months: int = Field(
        3, description="Churn label: the customer leaves within this many months."
    )
    churn_medium_threshold: float = Field(0.2, description="Churn probability for band medium.")
    churn_high_threshold: float = Field(0.5, description="Churn probability for band high.")
    recommender_model_name: str = Field("nbo-recommender", description="Registered model name.")
    churn_model_name: str = Field("nbo-churn", description="Registered model name.")
    maturity_model_name: str = Field(
        "nbo-maturity", description="Registered model name of the maturity outflow model."
    )
    response_model_name: str = Field(
        "nbo-response", description="Registered model name of the offer-response model."
    )
    serving_alias: str = Field("champion", description="Model alias the service loads.")
    host: str = Field("127.0.0.1", description="Service bind address.")
    port: int = Field(8000, description="Service port.")
    workers: int = Field(1, description="Uvicorn worker processes.")
    log_level: str = Field("info", description="Log level of the service.")
    metrics_flush_seconds: float = Field(
        1.0,
        gt=0,
        description="How often a worker writes its per-request metric observations (added up "
        "in the process) to the Prometheus values; /metrics flushes the answering worker's first.",
    )
    # --- model lifecycle: hot reload, challenger traffic, last-known-good (docs/lifecycle.md) ---
    promotion_margin: float = Field(
        0.02,
        ge=0,
        le=0.5,
        description=(
            "Non-inferiority margin of the promotion gate, in units of the primary metric: a "
            "version passes when the lower bound of the 95% interval of (version - champion) "
            "is above -margin."
        ),
    )
    model_poll_seconds: float = Field(
        30.0, ge=0, description="How often the service checks the model aliases for a new version."
    )
    challenger_share: float = Field(
        0.0, ge=0, le=1, description="Share of customers served by the challenger recommender."
    )
    shadow_mode: bool = Field(
        False, description="Score the challenger beside the champion for the audit, not shown."
    )
    control_share: float = Field(
        0.0,
        description=(
            "Share of customers (0-1, a keyed hash of the pseudonym) held out as a control "
            "group: no proactive cross-sell offer (service treatments still served)."
        ),
    )
    # --- decisioning: arbitration, contact policy, events, audit (docs/decisioning.md) ---
    decisioning_path: Path = Field(
        PACKAGE_DIR / "decisioning.yaml",
        description="Arbitration levers, channel weights and rules, retention boost (YAML).",
    )
    contact_prefix: str = Field("nbo:contact", description="Redis key prefix of contact state.")
    contact_max_impressions: int = Field(
        3, ge=1, description="Impressions of one product to one customer per rolling window."
    )
    contact_window_days: int = Field(7, ge=1, description="Rolling impression window (days).")
    decline_suppression_days: int = Field(
        30, ge=0, description="Days a product is not offered again after a decline or accept."
    )
    channel_daily_cap: int = Field(
        10, ge=1, description="Offers shown to one customer per channel per UTC day."
    )
    events_prefix: str = Field("nbo:events", description="Redis key prefix of feedback events.")
    events_retention: int = Field(
        10_000_000, ge=1000, description="Approximate max entries of the events stream."
    )
    event_dedupe_ttl_seconds: int = Field(
        7 * 86400, ge=60, description="How long an event_id is remembered for idempotency."
    )
    event_future_tolerance_seconds: float = Field(
        300.0,
        ge=0,
        description="Clock skew allowed on event timestamps: this far ahead of the server "
        "clock, or before the decision the event cites.",
    )
    audit_prefix: str = Field("nbo:audit", description="Redis key prefix of the decision audit.")
    audit_retention: int = Field(
        1_000_000, ge=100, description="Approximate max decisions kept in the Redis audit stream."
    )
    audit_index_ttl_seconds: int = Field(
        30 * 86400, ge=60, description="How long a decision can be looked up by request id."
    )
    audit_flush_ms: float = Field(
        50.0,
        ge=0,
        le=1000,
        description="Write-behind window of the audit trail: decisions are written in one "
        "batch per window, off the request path (0 = as soon as the writer is free).",
    )
    audit_queue_max: int = Field(
        50_000,
        ge=100,
        description="Decisions waiting for the audit writer before new ones "
        "are dropped (and counted).",
    )
    pseudonym_key: SecretStr = Field(
        SecretStr(INSECURE_DEMO_PSEUDONYM_KEY),
        description="HMAC key of pseudonymous customer ids; the default is for demos only.",
    )
    # --- API access: keys, scopes, rate limits, body size (README "Authentication and rate
    # limiting"); keys are stored hashed, see core/api_keys.py ---
    api_keys: list[ApiKeyEntry] = Field(
        default_factory=list,
        description=(
            'JSON list of {"name", "sha256", "scopes", "rate_limit"?} (`nbo keys new`); '
            "with none configured every protected route answers 401."
        ),
    )
    auth_disabled: bool = Field(
        False, description="Serve every route without an API key (local development only)."
    )
    auth_open_operations: bool = Field(
        True, description="/healthz, /readyz and /metrics answer without an API key."
    )
    rate_limit: str | None = Field(
        "1000/second",
        description="Requests per API key and worker process ('100/second'); 'off' = none.",
    )
    max_body_bytes: int = Field(
        65536, ge=1024, description="Larger request bodies are refused with 413."
    )

    # --- the web console (/console, docs/console.md) ---
    console_prefix: str = Field(
        "nbo:console", description="Redis key prefix of the web console's sessions."
    )
    console_session_seconds: int = Field(
        8 * 3600, ge=60, description="A console session ends this long after its login."
    )
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000",
        description="Where the MLflow UI answers (`nbo mlflow ui`): the console links runs there.",
    )
    # Batch jobs at bank scale (docs/operations.md "Batch jobs"): partitions bound their memory.
    partition_customers: int = Field(
        200_000,
        ge=1,
        description=(
            "Customers per partition: `nbo data generate` / `import-santander` write "
            "ceil(customers / this) hash partitions; every batch job holds one at a time."
        ),
    )
    training_sample_customers: int | None = Field(
        None,
        ge=1,
        description=(
            "Train on a sample of this many customers, stratified by tier x churned "
            "(training/sample.py); unset: every customer."
        ),
    )
    training_sample_seed: int = Field(7, description="Seed of the training sample.")

    @field_validator("api_keys")
    @classmethod
    def _unique_keys(cls, keys: list[ApiKeyEntry]) -> list[ApiKeyEntry]:
        for attribute in ("name", "sha256"):
            values = [getattr(key, attribute) for key in keys]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"api_keys: {attribute} repeated: {', '.join(repeated)}")
        return keys

    @field_validator("control_share")
    @classmethod
    def _valid_control_share(cls, value: float) -> float:
        # Named by its variable: an operator sets NBO_CONTROL_SHARE, not ``control_share``.
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"NBO_CONTROL_SHARE must be between 0 and 1 (a share of customers), got {value}"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        from core.redis_server import is_cluster_url, parse_cluster_url

        if value and is_cluster_url(value):
            parse_cluster_url(value)  # ValueError names what is wrong (never the password)
        return value

    @field_validator("feature_prefix", "contact_prefix", "events_prefix", "audit_prefix")
    @classmethod
    def _no_hash_tag_in_prefix(cls, value: str) -> str:
        # Keys get their Redis Cluster hash tags ({...}) from the code: a brace in a prefix
        # would move keys to other slots.
        if "{" in value or "}" in value:
            raise ValueError("a Redis key prefix must not contain '{' or '}'")
        return value

    @property
    def redis_cluster(self) -> bool:
        """``redis_url`` names a Redis Cluster (``redis+cluster://``)."""
        from core.redis_server import is_cluster_url

        return is_cluster_url(self.redis_url)

    @field_validator("rate_limit")
    @classmethod
    def _valid_rate_limit(cls, value: str | None) -> str | None:
        return parse_rate_limit(value)

    def production_problems(self) -> list[str]:
        """What makes these settings unsafe to serve real customers with: one message each.

        Empty in development mode. Why refuse rather than warn: a warning in a log nobody
        reads leaves pseudonyms reversible (the demo key is public) or the API open.
        """
        if self.environment is Environment.DEVELOPMENT:
            return []
        problems = []
        key = self.pseudonym_key.get_secret_value()
        if key == INSECURE_DEMO_PSEUDONYM_KEY or not key:
            problems.append(
                "NBO_PSEUDONYM_KEY is "
                + ("the public demo key" if key else "empty")
                + ": anyone could reverse the pseudonyms of the audit trail and the events "
                "by hashing candidate customer ids; set a secret key (e.g. the output of "
                "`openssl rand -hex 32`) from your secret store"
            )
        if self.auth_disabled:
            problems.append(
                "NBO_AUTH_DISABLED is true: every route would answer without an API key; "
                "unset it and configure NBO_API_KEYS"
            )
        if not self.api_keys:
            problems.append(
                "NBO_API_KEYS is empty: no client could call the API (every protected route "
                "answers 401); make keys with `nbo keys new --name NAME --scopes ...` and "
                "configure their entries"
            )
        return problems

    def refuse_unsafe(self) -> None:
        """Raise :class:`UnsafeSettingsError` when :meth:`production_problems` finds any."""
        problems = self.production_problems()
        if problems:
            raise UnsafeSettingsError(problems)

    @property
    def contact_horizon_seconds(self) -> int:
        """:func:`contact_horizon_seconds` of the configured window and decline pause."""
        return contact_horizon_seconds(self.contact_window_days, self.decline_suppression_days)

    @property
    def data_dir(self) -> Path:
        """Canonical tables (Parquet)."""
        return self.home / "data"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def model_cache_dir(self) -> Path:
        """Last-known-good copies of the serving models (used when MLflow is unreachable)."""
        return self.home / "model_cache"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force (embedded SQLite unless configured)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> str:
        """Artifact location for experiments created on the embedded tracking store."""
        return (self.mlflow_dir / "artifacts").resolve().as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings`` instead)."""
    return Settings()
