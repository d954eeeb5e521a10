"""One recorded decision made readable: each offer's suitability spelled out.

"suitable: R2 <= C3" reads: the product's risk level R2 does not exceed the investor level
the customer had on the day of the decision, C3. The customer's level is taken from the
feature record the decision used (kept in the audit record) and the decision's date, by
the same rule the request path applies (``core.suitability``): without a valid risk
assessment on that day the customer counts as C1 and only R1 products pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from core.catalogue import Catalogue
from core.customer_facts import customer_facts, iso_date
from core.suitability import assessment_valid, effective_risk_level

REQUEST_ID_PATTERN = r"^[0-9a-f]{32}$"


@dataclass(frozen=True)
class OfferLine:
    offer: dict[str, Any]
    name: str
    product_level: int | None
    suitability: str
    suitable: bool


def decision_day(record: dict[str, Any]) -> date | None:
    return iso_date(record.get("today")) or iso_date(str(record.get("decided_at", ""))[:10])


def customer_level(record: dict[str, Any], validity_days: int) -> tuple[int, str]:
    """The investor level the decision was bound by, and why (for the page)."""
    features = record.get("features")
    day = decision_day(record)
    if not isinstance(features, dict) or day is None:
        return 1, "no feature record in this decision: lowest risk level only"
    facts = customer_facts(features)
    level = effective_risk_level(facts, day, validity_days)
    if assessment_valid(facts, day, validity_days):
        return level, f"risk assessment C{level} of {facts.risk_assessed_on}"
    if facts.risk_level is None or facts.risk_assessed_on is None:
        return level, "no risk assessment: R1 only"
    return (
        level,
        f"risk assessment C{facts.risk_level} of {facts.risk_assessed_on} expired: R1 only",
    )


def offer_lines(offers: list[dict[str, Any]], catalogue: Catalogue, level: int) -> list[OfferLine]:
    lines = []
    for offer in offers:
        pid = str(offer.get("product_id"))
        try:
            product = catalogue.get(pid)
        except KeyError:
            lines.append(OfferLine(offer, pid, None, f"unknown product: C{level}", False))
            continue
        ok = product.risk_level <= level
        text = f"R{product.risk_level} <= C{level}" if ok else f"R{product.risk_level} > C{level}"
        lines.append(
            OfferLine(
                offer,
                product.name,
                product.risk_level,
                ("suitable: " if ok else "NOT suitable: ") + text,
                ok,
            )
        )
    return lines
