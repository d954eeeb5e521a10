"""A planted period for the outcomes report: decisions, events and holdings whose figures
are worked out by hand in ``EXPECTED`` (tests of ``features.outcomes`` and ``nbo report``).

Decisions of 2026-11-02 .. 2026-11-15, take-up window 30 days, holdings snapshots at the
ends of October, November and December 2026:

====  ========  ==========  ======  ==========================  ==========================
dec.  customer  variant     chan.   offers (control: holdout)   what happened
====  ========  ==========  ======  ==========================  ==========================
d0    C8        champion    app     credit_card (2026-10-20)    outside the window; an
                                                                accepted event cites it
d1    C1        champion    app     credit_card, funds          accepted credit_card; holds
                                                                it from Nov (taken)
d2    C2        champion    email   credit_card                 accepted, never holds it
d3    C3        champion    app     funds                       held funds before (no
                                                                take-up)
d4    C1        champion    app     pension_plan                accepted 32 days later (too
                                                                late to count)
d5    C4        challenger  app     credit_card                 accepted; taken in Nov
d6    C5        challenger  app     fee_waiver                  a retention treatment: shown,
                                                                no take-up to look for
d9    C5        challenger  app     (nothing)                   -
d7    C6        control     app     credit_card                 taken in Nov
d8    C7        control     email   funds                       -
====  ========  ==========  ======  ==========================  ==========================
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import redis

from core.catalogue import Catalogue
from core.pseudonym import Pseudonymiser
from core.redis_keys import decisions_key, events_key
from core.settings import Settings
from core.tables import Tables
from tests.support.tables import customer, holding, make_tables

DECISIONS = [
    # request id, customer, decided_at, variant, channel, tier, offers
    ("d0", "C8", "2026-10-20T09:00:00+00:00", "champion", "app", "mass", ["credit_card"]),
    ("d1", "C1", "2026-11-03T09:00:00+00:00", "champion", "app", "mass", ["credit_card", "funds"]),
    ("d2", "C2", "2026-11-04T09:00:00+00:00", "champion", "email", "mass", ["credit_card"]),
    ("d3", "C3", "2026-11-10T09:00:00+00:00", "champion", "app", "affluent", ["funds"]),
    ("d4", "C1", "2026-11-12T09:00:00+00:00", "champion", "app", "mass", ["pension_plan"]),
    ("d5", "C4", "2026-11-05T09:00:00+00:00", "challenger", "app", "mass", ["credit_card"]),
    ("d6", "C5", "2026-11-06T09:00:00+00:00", "challenger", "app", "mass", ["fee_waiver"]),
    ("d9", "C5", "2026-11-07T09:00:00+00:00", "challenger", "app", "mass", []),
    ("d7", "C6", "2026-11-07T09:00:00+00:00", "control", "app", "mass", ["credit_card"]),
    ("d8", "C7", "2026-11-08T09:00:00+00:00", "control", "email", "mass", ["funds"]),
]

ACCEPTED = [
    # event id, request id, product, timestamp
    ("e0", "d0", "credit_card", "2026-11-03T10:00:00+00:00"),
    ("e1", "d1", "credit_card", "2026-11-03T10:00:00+00:00"),
    ("e2", "d2", "credit_card", "2026-11-05T10:00:00+00:00"),
    ("e4", "d4", "pension_plan", "2026-12-14T10:00:00+00:00"),
    ("e5", "d5", "credit_card", "2026-11-06T10:00:00+00:00"),
]

SINCE, UNTIL = date(2026, 11, 2), date(2026, 11, 15)

EXPECTED = {
    # variant: decisions, customers, shown, accepted, with offers, took up
    "champion": (4, 3, 5, 2, 3, 1),
    "challenger": (3, 2, 2, 1, 1, 1),
    "control": (2, 2, 0, 0, 2, 1),
}


def request_id(name: str) -> str:
    """A 32-hex request id for a short planted name."""
    return name.encode().hex().ljust(32, "0")


def plant(
    client: redis.Redis,
    settings: Settings,
    pseudonymise: Pseudonymiser,
    decisions: list[tuple[Any, ...]] = DECISIONS,
    accepted: list[tuple[str, str, str, str]] = ACCEPTED,
    holdout: bool = True,
) -> None:
    """Write the decisions and events as the service records them."""
    for name, cust, at, variant, channel, tier, offers in decisions:
        record: dict[str, Any] = {
            "request_id": request_id(name),
            "decided_at": at,
            "customer": pseudonymise(cust),
            "channel": channel,
            "variant": variant,
            "tier": tier,
            "offers": [
                {"product_id": p, "rank": i + 1}
                for i, p in enumerate(offers if variant != "control" else [])
            ],
        }
        if variant == "control" and holdout:
            record["holdout_offers"] = offers
        client.xadd(decisions_key(settings.audit_prefix), {"d": orjson.dumps(record)})
    by_name = {d[0]: d for d in decisions}
    for event_id, name, product, at in accepted:
        decision = by_name.get(name)
        client.xadd(
            events_key(settings.events_prefix),
            {
                "event_id": event_id,
                "type": "accepted",
                "customer": pseudonymise(decision[1] if decision else "C9"),
                "product_id": product,
                "request_id": request_id(name),
                "channel": decision[4] if decision else "app",
                "timestamp": at,
                "received_at": at,
            },
        )


def planted_tables(catalogue: Catalogue) -> Tables:
    """Holdings at the ends of Oct, Nov and Dec 2026 (see the module docstring)."""
    ids = [p.id for p in catalogue.holdable]
    months = [date(2026, 10, 31), date(2026, 11, 30), date(2026, 12, 31)]
    later = {
        "C1": ("credit_card",),
        "C3": ("funds",),
        "C4": ("credit_card",),
        "C6": ("credit_card",),
    }
    rows = []
    for cust in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"):
        for month in months:
            held = ["current_account"]
            if cust == "C3":
                held.append("funds")  # held before the offer: no take-up
            elif month > months[0]:
                held.extend(later.get(cust, ()))
            rows.append(holding(cust, month, *held))
    people = [customer(c) for c in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8")]
    return make_tables(ids, people, rows)
