"""One settings object for the whole project (environment prefix ``NBO_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent


class Settings(BaseSettings):
    """Configuration read from ``NBO_*`` environment variables (or a ``.env`` file).

    Every path defaults to a folder under ``home`` so that a fresh clone runs with no
    configuration at all (the "embedded default": SQLite MLflow, a local Redis server).
    """

    model_config = SettingsConfigDict(env_prefix="NBO_", env_file=".env", extra="ignore")

    home: Path = Field(Path("var"), description="Working folder for data, MLflow and Redis.")
    redis_url: str | None = Field(
        None, description="External Redis URL; unset starts the embedded Redis server."
    )
    embedded_redis_port: int = Field(6399, description="TCP port of the embedded Redis server.")
    redis_timeout_seconds: float = Field(0.25, description="Socket timeout for Redis calls.")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; unset uses SQLite under home/mlflow."
    )
    catalogue_path: Path = Field(
        PACKAGE_DIR / "catalogue.yaml", description="Product catalogue YAML file."
    )
    feature_prefix: str = Field("nbo:fs", description="Redis key prefix of feature sets.")
    feature_versions_kept: int = Field(
        2, description="Materialized feature-set versions kept in Redis (current included)."
    )
    feature_pointer_refresh_seconds: float = Field(
        5.0, description="How often the service re-reads the current feature-set pointer."
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
    serving_alias: str = Field("champion", description="Model alias the service loads.")
    host: str = Field("127.0.0.1", description="Service bind address.")
    port: int = Field(8000, description="Service port.")
    workers: int = Field(1, description="Uvicorn worker processes.")
    log_level: str = Field("info", description="Log level of the service.")

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
