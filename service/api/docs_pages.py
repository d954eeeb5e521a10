"""``/docs`` (Swagger UI) and ``/redoc``, with their scripts and styles served by the service.

FastAPI's default pages load Swagger UI and ReDoc from a CDN without integrity checks: a
compromised or hijacked CDN would run its script on a page that holds an operator's API
key. Here the same pages (FastAPI's own HTML builders) load the assets from this service,
out of the ``fastapi-offline`` package, which ships them; nothing on the pages comes from
another origin. The pages and assets are open, like the OpenAPI document they show.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
"""Swagger UI's and ReDoc's bundles as released, with a favicon."""

PAGES = (DOCS_URL, REDOC_URL)


def install_docs_pages(app: FastAPI) -> None:
    """Add the two pages and the asset folder to an app built with ``docs_url=None`` and
    ``redoc_url=None`` (FastAPI's CDN pages off)."""
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("build the app with docs_url=None, redoc_url=None (the CDN pages)")
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    favicon = f"{ASSETS_URL}/favicon.png"
    swagger_ui = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=favicon,
        oauth2_redirect_url=None,
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    redoc = get_redoc_html(
        openapi_url=openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=favicon,
        with_google_fonts=False,
    )
    for path, page in ((DOCS_URL, swagger_ui.body), (REDOC_URL, redoc.body)):
        app.add_api_route(path, _serving(bytes(page)), methods=["GET"], include_in_schema=False)


def _serving(page: bytes) -> Callable[[], Awaitable[HTMLResponse]]:
    """An endpoint answering ``page`` (built once: it depends on nothing per request)."""

    async def endpoint() -> HTMLResponse:
        return HTMLResponse(page)

    return endpoint
