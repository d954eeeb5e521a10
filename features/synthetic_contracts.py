"""The synthetic bank's contracts: term deposits and loans with dates, amounts and outcomes.

Why: the maturity outflow model needs contracts whose fate at maturity has causes a model
can find. A deposit spell starts where the simulation ADDS a deposit product (or holds one
when the window opens); from then on the contracts decide: at each maturity the money is
renewed (a new contract of the same product opens that day), moved to another product of
the bank, or leaves the bank. The deposit columns of the holdings are rewritten from the
contracts (held at a snapshot iff a contract of that product is open then), and money that
leaves shows as an outflow in the month it leaves (the balance falls by it from then on).

Planted effects on the log-odds that the money leaves at maturity (``LEAVE_EFFECTS``),
from what the bank could see at the snapshot before the maturity date:

* rate sensitivity: a latent trait (``RATE_SENSITIVE_SHARE`` of customers, more savers
  and investors); such customers park a large share of their assets in a deposit
  (``amount / balance`` of 0.5-0.9 against 0.1-0.4), which is how a model can see it;
* recent outflows: net flow over the last 3 months below ``-OUTFLOW_CUT`` of the balance;
* low engagement: fewer than ``LOW_LOGINS`` logins a month over the last 3 months;
* tenure: customers of ``LONG_TENURE_YEARS`` years or more stay more;
* competing offers: a customer whose whole relationship ends within 90 days after the
  maturity (a churn path) takes the money too (churn paths show as falling logins and
  outflows, the customer's other behaviour).

Loans (``loans``, ``mortgage``) get one contract per holding spell: repaid when the spell
ends, open otherwise; their holdings are not changed. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from features.synthetic_population import INVESTOR, SAVER, Population
from features.synthetic_products import ProductRules
from features.synthetic_simulation import History

DEPOSIT_TERMS_MONTHS = {"short_term_deposit": 3, "medium_term_deposit": 6, "long_term_deposit": 12}
LOAN_TERMS_MONTHS = {"loans": 36, "mortgage": 240}
RATE_SENSITIVE_SHARE = 0.25
"""Share of adults who chase rates (x2 among savers and investors, before normalising)."""
OUTFLOW_CUT = 0.05
LOW_LOGINS = 2.0
LONG_TENURE_YEARS = 5.0
LEAVE_BASE = -3.2
LEAVE_EFFECTS = {
    "rate_sensitive": 2.2,
    "recent_outflow": 1.6,
    "low_engagement": 1.4,
    "long_tenure": -1.0,
    "leaving_the_bank": 3.0,
}
"""Log-odds added to ``LEAVE_BASE`` by each signal (see the module docstring)."""
MOVE_SHARE = 0.3
"""Of the money that stays, the share moved to another product instead of renewed."""
RENEWAL_INTEREST = 0.02
"""Annual interest credited to the amount at each renewal."""
DAYS_PER_MONTH = 30.4375


@dataclass
class _Batch:
    """Contracts as parallel arrays (one entry per contract)."""

    customer: np.ndarray  # int index into the population
    product: np.ndarray  # column index into rules.ids
    opened: np.ndarray  # datetime64[D]
    maturity: np.ndarray  # datetime64[D]
    amount: np.ndarray
    closed: np.ndarray  # datetime64[D], NaT = open
    outcome: np.ndarray  # object: None or a CONTRACT_OUTCOMES value

    @classmethod
    def concat(cls, parts: list[_Batch]) -> _Batch:
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__)
        )


def _spell_starts(
    rng: np.random.Generator,
    held: np.ndarray,
    present: np.ndarray,
    window: np.ndarray,
    pop: Population,
    term_days: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, opened_on, start snapshot) of every spell of ``held`` (months, n).

    A spell under way when the window opens started up to one term before it (not before
    joining); a spell that starts later was opened since the previous snapshot.
    """
    before = np.vstack([np.zeros((1, held.shape[1]), dtype=bool), held[:-1] & present[:-1]])
    t, i = np.nonzero(held & ~before)
    snapshot = window[t]
    previous = window[np.maximum(t - 1, 0)]
    gap = np.maximum((snapshot - previous).astype(np.int64), 1)
    added = snapshot - rng.integers(0, gap).astype("timedelta64[D]")
    running = snapshot - (rng.random(len(t)) * term_days).astype(np.int64).astype("timedelta64[D]")
    opened = np.maximum(np.where(t == 0, running, added), pop.joined_on[i])
    return i, opened.astype("datetime64[D]"), t


def _after(days: np.ndarray, months: int | np.ndarray) -> np.ndarray:
    return days + np.round(np.asarray(months) * DAYS_PER_MONTH).astype("timedelta64[D]")


@dataclass(frozen=True)
class _Signals:
    """What the bank saw at each snapshot, as (months, n) arrays (before any contract)."""

    logins: np.ndarray
    net_flow: np.ndarray
    balance: np.ndarray


def _leave_probability(
    batch: _Batch,
    rate_sensitive: np.ndarray,
    signals: _Signals,
    window: np.ndarray,
    pop: Population,
    left_on: np.ndarray,
) -> np.ndarray:
    """The planted probability that each contract's money leaves at its maturity."""
    m = np.clip(np.searchsorted(window, batch.maturity, side="left") - 1, 0, len(window) - 1)
    i = batch.customer
    lo = np.maximum(m - 2, 0)
    logins = np.zeros(len(i))
    flow = np.zeros(len(i))
    count = np.zeros(len(i))
    for back in range(3):
        k = np.maximum(m - back, lo)
        valid = (m - back) >= lo
        logins += np.where(valid, signals.logins[k, i], 0.0)
        flow += np.where(valid, signals.net_flow[k, i], 0.0)
        count += valid
    logins /= np.maximum(count, 1)
    net_flow = flow / np.maximum(signals.balance[m, i], 1.0)
    tenure = (batch.maturity - pop.joined_on[i]).astype(np.int64) / 365.25
    leaving = ~np.isnat(left_on[i]) & (left_on[i] <= batch.maturity + np.timedelta64(90, "D"))
    logit = (
        LEAVE_BASE
        + LEAVE_EFFECTS["rate_sensitive"] * rate_sensitive[i]
        + LEAVE_EFFECTS["recent_outflow"] * (net_flow < -OUTFLOW_CUT)
        + LEAVE_EFFECTS["low_engagement"] * (logins < LOW_LOGINS)
        + LEAVE_EFFECTS["long_tenure"] * (tenure >= LONG_TENURE_YEARS)
        + LEAVE_EFFECTS["leaving_the_bank"] * leaving
    )
    return 1.0 / (1.0 + np.exp(-logit))


def _deposits(
    rng: np.random.Generator,
    pop: Population,
    rules: ProductRules,
    history: History,
    window: np.ndarray,
    rate_sensitive: np.ndarray,
    signals: _Signals,
) -> _Batch:
    """Every deposit contract: first ones at spell starts, then renewals until the data end."""
    end = window[-1]
    left_on = history.left_on
    rounds: list[_Batch] = []
    current: list[_Batch] = []
    for pid, term in DEPOSIT_TERMS_MONTHS.items():
        j = rules.index(pid)
        if j is None:
            continue
        held = history.holdings[:, :, j].astype(bool)
        i, opened, t = _spell_starts(rng, held, history.present, window, pop, term * DAYS_PER_MONTH)
        share = np.where(
            rate_sensitive[i], rng.uniform(0.5, 0.9, len(i)), rng.uniform(0.1, 0.4, len(i))
        )
        amount = np.maximum(np.round(share * history.balance[t, i], -2), 500.0)
        current.append(
            _Batch(
                i,
                np.full(len(i), j),
                opened,
                _after(opened, term),
                amount,
                np.full(len(i), np.datetime64("NaT"), dtype="datetime64[D]"),
                np.full(len(i), None, dtype=object),
            )
        )
    batch = _Batch.concat(current)
    terms = {
        rules.index(p): t for p, t in DEPOSIT_TERMS_MONTHS.items() if rules.index(p) is not None
    }
    while len(batch.customer):
        gone_first = ~np.isnat(left_on[batch.customer]) & (left_on[batch.customer] < batch.maturity)
        matured = (batch.maturity <= end) & ~gone_first
        leave = rng.random(len(batch.customer)) < _leave_probability(
            batch, rate_sensitive, signals, window, pop, left_on
        )
        move = rng.random(len(batch.customer)) < MOVE_SHARE
        outcome = np.full(len(batch.customer), None, dtype=object)
        outcome[matured] = np.where(
            leave[matured], "left", np.where(move[matured], "moved", "renewed")
        )
        early = gone_first & (left_on[batch.customer] <= end)
        outcome[early] = "left"
        closed = np.where(
            matured, batch.maturity, np.where(early, left_on[batch.customer], np.datetime64("NaT"))
        )
        batch = replace(batch, outcome=outcome, closed=closed.astype("datetime64[D]"))
        rounds.append(batch)
        again = outcome == "renewed"
        months = np.array([terms[int(j)] for j in batch.product[again]], dtype=np.int64)
        renewed_on = batch.maturity[again]
        batch = _Batch(
            batch.customer[again],
            batch.product[again],
            renewed_on,
            _after(renewed_on, months),
            np.round(batch.amount[again] * (1 + RENEWAL_INTEREST * months / 12), 2),
            np.full(int(again.sum()), np.datetime64("NaT"), dtype="datetime64[D]"),
            np.full(int(again.sum()), None, dtype=object),
        )
    return _Batch.concat(rounds) if rounds else batch


def _loans(
    rng: np.random.Generator,
    pop: Population,
    rules: ProductRules,
    history: History,
    window: np.ndarray,
) -> _Batch:
    """One contract per loan spell: repaid when the spell ends, open while it lasts."""
    parts: list[_Batch] = []
    income = np.nan_to_num(pop.income, nan=12_000.0)
    for pid, term in LOAN_TERMS_MONTHS.items():
        j = rules.index(pid)
        if j is None:
            continue
        held = history.holdings[:, :, j].astype(bool) & history.present
        i, opened, t = _spell_starts(rng, held, history.present, window, pop, term * DAYS_PER_MONTH)
        scale = (
            rng.uniform(2.0, 4.0, len(i)) if pid == "mortgage" else rng.uniform(0.1, 0.5, len(i))
        )
        amount = np.maximum(np.round(income[i] * scale, -2), 1_000.0)
        # The spell's last snapshot: the first later snapshot not holding it ends the loan.
        later = np.vstack([held[1:], np.zeros((1, held.shape[1]), dtype=bool)])
        ends = held & ~later
        last = np.array(
            [t0 + np.argmax(ends[t0:, c]) for t0, c in zip(t, i, strict=True)], dtype=np.int64
        )
        repaid = last < len(window) - 1
        gap = np.maximum(
            (window[np.minimum(last + 1, len(window) - 1)] - window[last]).astype(np.int64), 1
        )
        closed_on = window[last] + (1 + rng.integers(0, gap)).astype("timedelta64[D]")
        gone = history.left_on[i]
        closed_on = np.where(np.isnat(gone) | (closed_on <= gone), closed_on, gone)
        closed = np.where(repaid, closed_on, np.datetime64("NaT")).astype("datetime64[D]")
        outcome = np.full(len(i), None, dtype=object)
        outcome[repaid] = "repaid"
        parts.append(
            _Batch(i, np.full(len(i), j), opened, _after(opened, term), amount, closed, outcome)
        )
    return _Batch.concat(parts)


def _rewrite_deposit_holdings(
    history: History, rules: ProductRules, batch: _Batch, window: np.ndarray
) -> None:
    """Deposit columns: held at a snapshot iff a contract of the product is open then."""
    months = len(window)
    for pid in DEPOSIT_TERMS_MONTHS:
        j = rules.index(pid)
        if j is None:
            continue
        mine = batch.product == j
        first = np.searchsorted(window, batch.opened[mine], side="left")
        closed = batch.closed[mine]
        stop = np.where(np.isnat(closed), months, np.searchsorted(window, closed, side="left"))
        counts = np.zeros((months + 1, history.present.shape[1]), dtype=np.int64)
        np.add.at(counts, (first, batch.customer[mine]), 1)
        np.add.at(counts, (stop, batch.customer[mine]), -1)
        open_now = np.cumsum(counts, axis=0)[:months] > 0
        history.holdings[:, :, j] = (open_now & history.present).astype(np.int8)


def _money_leaves(history: History, batch: _Batch, window: np.ndarray) -> None:
    """Money that leaves the bank shows as an outflow that month; the balance falls by it."""
    left = (batch.outcome == "left") & ~np.isnat(batch.closed)
    t = np.searchsorted(window, batch.closed[left], side="left")
    i = batch.customer[left]
    amount = batch.amount[left]
    inside = t < len(window)
    for month, customer, money in zip(t[inside], i[inside], amount[inside], strict=True):
        if not history.present[month, customer]:
            continue  # the customer is gone by then: the churn path already moved it out
        taken = min(money, history.balance[month, customer])
        history.outflow[month, customer] += taken
        history.balance[month:, customer] = np.where(
            history.present[month:, customer],
            np.maximum(history.balance[month:, customer] - taken, 0.0),
            history.balance[month:, customer],
        )


def plant_contracts(
    rng: np.random.Generator,
    pop: Population,
    rules: ProductRules,
    history: History,
    window: list[date],
    customer_ids: np.ndarray,
) -> pd.DataFrame:
    """The contracts table of the bank; rewrites ``history``'s deposit holdings and flows.

    ``history`` is changed in place (deposit columns, outflow, balance) so that the
    holdings and behaviour tables assembled from it agree with the contracts.
    """
    days = np.array(window, dtype="datetime64[D]")
    rate_weight = np.where(np.isin(pop.archetype, (SAVER, INVESTOR)), 2.0, 1.0)
    rate_sensitive = rng.random(pop.n) < RATE_SENSITIVE_SHARE * rate_weight / rate_weight.mean()
    signals = _Signals(
        logins=history.logins.astype(np.float64),
        net_flow=history.inflow - history.outflow,
        balance=history.balance.copy(),
    )
    deposits = _deposits(rng, pop, rules, history, days, rate_sensitive, signals)
    loans = _loans(rng, pop, rules, history, days)
    _rewrite_deposit_holdings(history, rules, deposits, days)
    _money_leaves(history, deposits, days)
    batch = _Batch.concat([deposits, loans])
    frame = pd.DataFrame(
        {
            "customer_id": customer_ids[batch.customer],
            "product": np.array(rules.ids, dtype=object)[batch.product],
            "opened_on": batch.opened.astype("datetime64[ns]"),
            "maturity_date": batch.maturity.astype("datetime64[ns]"),
            "amount": batch.amount.astype(np.float64),
            "closed_on": batch.closed.astype("datetime64[ns]"),
            "outcome": batch.outcome,
        }
    )
    frame = frame.sort_values(["customer_id", "opened_on", "product"], kind="stable")
    frame.insert(0, "contract_id", [f"K{k + 1:09d}" for k in range(len(frame))])
    return frame.reset_index(drop=True)
