"""The HTTP service: registry models + Redis features -> a suitable next best offer.

Nothing imports this package; uvicorn starts it by its import string
(``service.app:create_app``, a factory).
"""
