"""Add the console to the service app (``service.app.create_app`` calls this)."""

from __future__ import annotations

from fastapi import FastAPI

from service.console.pages import LoginRequired, login_redirect, public, router


def install_console(app: FastAPI) -> None:
    """The console's routes (``/console``), and its redirect to the login page."""
    app.include_router(public)
    app.include_router(router)
    app.add_exception_handler(LoginRequired, login_redirect)
