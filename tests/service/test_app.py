"""The application factory refuses unsafe settings outside development mode."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import INSECURE_DEMO_PSEUDONYM_KEY, Environment, Settings, UnsafeSettingsError
from service.app import create_app


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"pseudonym_key": SecretStr(INSECURE_DEMO_PSEUDONYM_KEY)}, "NBO_PSEUDONYM_KEY"),
        ({"api_keys": []}, "NBO_API_KEYS"),
        ({"auth_disabled": True}, "NBO_AUTH_DISABLED"),
    ],
)
def test_unsafe_settings_stop_the_factory(
    settings: Settings, change: dict[str, object], named: str
) -> None:
    with pytest.raises(UnsafeSettingsError, match=named):
        create_app(settings.model_copy(update=change))


def test_development_mode_serves_with_the_demo_defaults(
    settings: Settings, empty_registry: str
) -> None:
    demo = settings.model_copy(
        update={
            "environment": Environment.DEVELOPMENT,
            "pseudonym_key": SecretStr(INSECURE_DEMO_PSEUDONYM_KEY),
            "auth_disabled": True,
            "mlflow_tracking_uri": empty_registry,
        }
    )
    with TestClient(create_app(demo)) as client:
        assert client.get("/healthz").status_code == 200
