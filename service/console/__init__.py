"""The web console (``/console``): server-rendered pages for compliance officers, marketers
and data scientists, behind the service's own API keys (docs/console.md).

``service.console.mount.install_console`` adds it to the app; each view's data is assembled
by its own module (``customer_view``, ``decision_view``, ``outcomes_view``,
``models_view``), the session and CSRF rules live in ``session``, the routes in ``pages``.
"""
