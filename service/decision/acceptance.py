"""Will the customer take the offer now, on this channel? The two factors arbitration adds.

    priority = propensity x P(accept) x channel affinity x value x context x lever x boost

* **P(accept)** - the response model (``nbo-response``, ``core.scoring.response``) scores
  every candidate with ``features.response_features.contact_features`` for (record,
  product, request channel, the customer's contact entries, now), all candidates in one
  batch (``accept_probabilities``). The model reads the product's contact history (times shown since
  the last outcome, earlier outcome, days since it), so a product shown again and again
  scores lower than a fresh one (contact fatigue).
* **channel affinity** - the customer's own responsiveness on the request channel, which
  the model cannot know (the Bank Marketing file it learns from has only cellular and
  telephone calls). From the same contact entries, empirical Bayes: the customer's overall
  acceptance rate ``p = (A + S x PRIOR_RATE) / (N + S)`` (``A`` acceptances in ``N``
  contacts, any channel), then per channel ``p_c = (a_c + S x p) / (n_c + S)``, and the
  affinity is ``p_c / p``: above 1 where the customer accepts more than their own average,
  below 1 on a channel they ignore, exactly 1 on a channel with no history. ``S`` =
  :data:`PRIOR_STRENGTH` contacts, so one lucky acceptance does not make a channel.
* **preferred channel** - the channel with the highest ``p_c`` when the customer has
  accepted anything in the contact history (source ``responses``), else the record's
  ``preferred_channel`` (source ``record``), else none.

Without a response model both factors are absent (``None``, counted as 1): the service
answers exactly as it does without the model; the preferred channel is still derived.
Neither factor removes a candidate: caps, decline pauses and suitability were applied
before, and arbitration only reorders what passed them. A model that fails on a request
is logged and ignored for that request (the answer is made as without a model).

Pure apart from that log line: the entries are the ``ContactState`` the request already
read in its one Redis round trip. The model runs with one OpenMP thread
(:func:`one_openmp_thread`): scikit-learn's gradient boosting otherwise starts a thread per
core for a 15-row prediction, and on a busy two-core machine one such call took 103 ms
instead of 6 (one measurement).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from threadpoolctl import ThreadpoolController

from core.catalogue import Product
from core.scoring.response import ResponseScorer
from core.tables import CHANNELS
from features.response_features import contact_features
from service.decision.contact_policy import ContactEntry
from service.infra.log import fields

log = logging.getLogger(__name__)

PRIOR_RATE = 0.1
"""Acceptance rate a customer without history starts from (about the Bank Marketing
file's 11%); it only matters relative to the customer's own counts."""
PRIOR_STRENGTH = 4.0
"""Weight of the prior, in contacts. A channel with ``n`` showings and no acceptance has
affinity ``S / (n + S)``: 4 ignored showings halve it. One acceptance in 2 showings on push
and none in 6 on sms: push 2.10, sms 0.40."""
FROM_RESPONSES = "responses"
FROM_RECORD = "record"


@dataclass(frozen=True)
class ChannelRate:
    """One channel of a customer's contact history: trials, acceptances, smoothed rate."""

    shown: int
    accepted: int
    rate: float


@dataclass(frozen=True)
class PreferredChannel:
    """Where to reach the customer, and how that was derived."""

    channel: str
    source: str  # FROM_RESPONSES | FROM_RECORD
    accept_rate: float | None = None  # the smoothed rate (responses only)

    def as_record(self) -> dict[str, object]:
        return {"channel": self.channel, "source": self.source, "accept_rate": self.accept_rate}


@dataclass(frozen=True)
class ChannelResponse:
    """A customer's acceptance per channel, smoothed (see the module docstring)."""

    overall: float = PRIOR_RATE
    channels: dict[str, ChannelRate] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return sum(rate.accepted for rate in self.channels.values())

    def rate(self, channel: str) -> float:
        known = self.channels.get(channel)
        return known.rate if known is not None else self.overall

    def affinity(self, channel: str) -> float:
        return self.rate(channel) / self.overall

    def preferred(self, record: Mapping[str, Any] | None) -> PreferredChannel | None:
        """Best-responding channel (ties: more acceptances, then ``CHANNELS`` order); else
        the record's ``preferred_channel`` when it names a known channel; else None."""
        if self.channels and self.accepted > 0:
            order = {name: index for index, name in enumerate(CHANNELS)}
            best = min(
                self.channels,
                key=lambda c: (-self.channels[c].rate, -self.channels[c].accepted, order[c]),
            )
            return PreferredChannel(best, FROM_RESPONSES, self.channels[best].rate)
        stated = record.get("preferred_channel") if record is not None else None
        if isinstance(stated, str) and stated in CHANNELS:
            return PreferredChannel(stated, FROM_RECORD)
        return None

    def as_record(self) -> dict[str, object]:
        return {
            "overall": self.overall,
            "channels": {
                name: {"shown": r.shown, "accepted": r.accepted, "rate": r.rate}
                for name, r in self.channels.items()
            },
        }


def channel_response(entries: Sequence[ContactEntry]) -> ChannelResponse:
    """Smoothed acceptance per channel from the contact entries (known channels only).

    A channel's trials are its ``shown`` entries, or its acceptances when more (an offer
    accepted whose showing was not reported still was a contact).
    """
    if not entries:
        return ChannelResponse(_NO_HISTORY_OVERALL, {})
    shown: dict[str, int] = {}
    accepted: dict[str, int] = {}
    for entry in entries:
        if entry.channel not in CHANNELS:
            continue
        if entry.kind == "shown":
            shown[entry.channel] = shown.get(entry.channel, 0) + 1
        elif entry.kind == "accepted":
            accepted[entry.channel] = accepted.get(entry.channel, 0) + 1
    names = [c for c in CHANNELS if c in shown or c in accepted]
    trials = {c: max(shown.get(c, 0), accepted.get(c, 0)) for c in names}
    total_accepted = sum(accepted.values())
    overall = (total_accepted + PRIOR_STRENGTH * PRIOR_RATE) / (
        sum(trials.values()) + PRIOR_STRENGTH
    )
    channels = {
        c: ChannelRate(
            trials[c],
            accepted.get(c, 0),
            (accepted.get(c, 0) + PRIOR_STRENGTH * overall) / (trials[c] + PRIOR_STRENGTH),
        )
        for c in names
    }
    return ChannelResponse(overall, channels)


_NO_HISTORY_OVERALL = (0 + PRIOR_STRENGTH * PRIOR_RATE) / (0 + PRIOR_STRENGTH)
"""The overall rate :func:`channel_response` works out for no entries (the same expression)."""


@dataclass(frozen=True)
class Acceptance:
    """What arbitration multiplies in, and what the answer says about channels.

    ``p_accept`` is empty and ``affinity`` None without a response model (factors of 1).
    """

    p_accept: dict[str, float] = field(default_factory=dict)  # product id -> P(accept)
    affinity: float | None = None  # of the request channel
    response: ChannelResponse = field(default_factory=ChannelResponse)
    preferred: PreferredChannel | None = None

    @property
    def modelled(self) -> bool:
        return self.affinity is not None

    def factors(self, product_id: str) -> tuple[float | None, float | None]:
        """(P(accept), channel affinity) of a candidate; (None, None) when not modelled."""
        if not self.modelled:
            return None, None
        return self.p_accept.get(product_id, math.nan), self.affinity

    def as_record(self) -> dict[str, object]:
        return {
            "modelled": self.modelled,
            "channel_affinity": self.affinity,
            "channel_response": self.response.as_record(),
            "preferred_channel": self.preferred.as_record() if self.preferred else None,
        }


def accept_probabilities(
    model: ResponseScorer,
    record: Mapping[str, Any] | None,
    products: Sequence[Product],
    channel: str,
    entries: Sequence[ContactEntry],
    now: datetime,
) -> dict[str, float]:
    """Product id -> P(accept) of every candidate, in one batch call of the model."""
    if not products:
        return {}
    at = now.timestamp()
    rows = [contact_features(record or {}, p.id, channel, entries, at) for p in products]
    with one_openmp_thread(model):
        values = model.accept_probabilities(rows)
    if len(values) != len(products):
        raise ValueError(f"response model returned {len(values)} values for {len(products)}")
    return {p.id: float(v) for p, v in zip(products, values, strict=True)}


@lru_cache(maxsize=1)
def _thread_pools(model_id: int) -> ThreadpoolController:
    """The process's thread-pool libraries, looked up again only when another model serves
    (a lookup costs milliseconds; a newly loaded model may have brought a library)."""
    return ThreadpoolController()


def one_openmp_thread(model: object) -> AbstractContextManager[object]:
    """OpenMP limited to one thread in the calling thread while the context is open (about
    10 us): a request's prediction is too small to share out across cores."""
    return _thread_pools(id(model)).limit(limits=1, user_api="openmp")


def assess_acceptance(
    model: ResponseScorer | None,
    record: Mapping[str, Any] | None,
    candidates: Sequence[Product],
    channel: str,
    entries: Sequence[ContactEntry],
    now: datetime,
) -> Acceptance:
    """The factors of ``candidates`` on ``channel`` (see the module docstring)."""
    response = channel_response(entries)
    preferred = response.preferred(record)
    if model is None:
        return Acceptance(response=response, preferred=preferred)
    try:
        p_accept = accept_probabilities(model, record, candidates, channel, entries, now)
    except Exception as exc:  # a model failing on one request must not cost the answer
        log.error(
            "response model failed; answering without it",
            extra=fields(error=f"{type(exc).__name__}: {exc}"),
        )
        return Acceptance(response=response, preferred=preferred)
    return Acceptance(p_accept, response.affinity(channel), response, preferred)
