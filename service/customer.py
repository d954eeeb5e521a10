"""A feature record -> the facts the suitability filter needs: see ``core.customer_facts``.

The conversion lives in ``core`` so that replaying recorded decisions (``registry.replay``)
reads a record exactly as the service does.
"""

from core.customer_facts import customer_facts

__all__ = ["customer_facts"]
