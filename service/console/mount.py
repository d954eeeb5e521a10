"""Add the console to the service app (``service.app.create_app`` calls this)."""

from __future__ import annotations

from fastapi import FastAPI

from service.console import login, pages
from service.console.web import LoginRequired, login_redirect


def install_console(app: FastAPI) -> None:
    """The console's routes (``/console``), and its redirect to the login page."""
    app.include_router(login.public)
    app.include_router(login.router)
    app.include_router(pages.router)
    app.add_exception_handler(LoginRequired, login_redirect)
