"""An unexpected exception is a 500 with the request id, logged without its message."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app
from tests.support.auth import AUTH
from tests.support.logs import captured_logs

RAW_ID = "S0004026"


def test_an_unexpected_error_is_a_500_whose_log_names_no_request_value(
    settings: Settings, empty_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> object:
        raise ValueError(f"cannot decide for {RAW_ID}")

    monkeypatch.setattr("service.api.recommendations.recommend", broken)
    served = settings.model_copy(update={"mlflow_tracking_uri": empty_registry})
    with TestClient(create_app(served), headers=AUTH) as client, captured_logs() as logs:
        response = client.post(
            "/v1/recommendations", json={"customer_id": RAW_ID, "channel": "app"}
        )
        assert client.get("/healthz").status_code == 200  # the app answers on
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json() == {
        "type": "internal_error",
        "detail": f"internal error (request id {request_id})",
    }
    text = logs.getvalue()
    assert '"event":"unhandled error"' in text and '"error":"ValueError"' in text
    assert "in broken" in text  # where it was raised
    assert f'"request_id":"{request_id}"' in text
    assert RAW_ID not in text
