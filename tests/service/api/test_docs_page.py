"""``/docs`` and ``/redoc`` load their scripts and styles from the service, never a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app


def test_the_docs_pages_use_only_assets_the_service_serves(
    settings: Settings, empty_registry: str
) -> None:
    """Issue #27: Swagger UI came from a CDN without integrity checks. The pages and their
    assets are open (no API key), like the OpenAPI document."""
    served = settings.model_copy(update={"mlflow_tracking_uri": empty_registry})
    with TestClient(create_app(served)) as client:  # no key
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200, page
            assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
            assert assets, page
            for asset in assets:
                assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
                response = client.get(asset)
                assert response.status_code == 200, asset
                assert len(response.content) > 1000, asset
        assert "https://" not in client.get("/docs").text
