"""Training on a sample of customers: stratified by tier and churn, deterministic per seed.

A model of a 10 M-customer bank need not see every customer: ``NBO_TRAINING_SAMPLE_CUSTOMERS``
(or ``nbo train ... --sample N``) draws N customers, in proportion from each stratum of
tier (``mass`` / ``affluent`` / ``private`` / unknown, as in the master data) x churned
(whether the customer has left the bank), so that rare strata (private customers who
left) keep their share. The sample only chooses customers: every snapshot's features and
labels are still computed point in time from that customer's rows up to the snapshot
(``training.datasets``). The same customers table and seed give the same sample; the
sample's size, seed and strata are logged as parameters of the MLflow run.

Reading: the strata come from three columns of the customers table; then the partitions
are read one at a time and only the sampled customers' rows kept, so the memory is the
sample's plus one partition.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.tables import Tables, read_columns, read_partition, restrict, table_layout

STRATUM_COLUMNS = ("customer_id", "tier", "left_on")


@dataclass(frozen=True)
class CustomerSample:
    """Which customers a model trains on and how they were drawn."""

    population: int  # customers in the bank
    seed: int
    strata: dict[str, tuple[int, int]]  # "tier|churned": (customers in the bank, drawn)
    ids: frozenset[str] = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.ids)

    def params(self) -> dict[str, object]:
        """The MLflow run parameters that document the sample."""
        return {
            "sample.customers": self.size,
            "sample.population": self.population,
            "sample.seed": self.seed,
            "sample.stratified_by": "tier x churned",
            "sample.strata": json.dumps(
                {k: {"bank": bank, "drawn": drawn} for k, (bank, drawn) in self.strata.items()},
                sort_keys=True,
            ),
        }


def strata(customers: pd.DataFrame) -> pd.Series:
    """Each customer's stratum, ``<tier>|churned`` or ``<tier>|stayed``."""
    tier = customers["tier"].astype(object).where(customers["tier"].notna(), "unknown")
    churned = np.where(customers["left_on"].notna().to_numpy(), "churned", "stayed")
    return pd.Series(tier.astype(str).to_numpy() + "|" + churned, index=customers.index)


def stratified_sample(customers: pd.DataFrame, size: int, seed: int) -> CustomerSample:
    """Draw ``size`` customers, each stratum in proportion to its share of the bank.

    Allocation by largest remainder (the sizes add up to ``size`` exactly); within a
    stratum, customers are taken in a seeded random order of their sorted ids, so the
    sample does not depend on the rows' order. ``size`` >= the bank: everyone.
    """
    if size < 1:
        raise ValueError(f"the training sample must have at least 1 customer, got {size}")
    customers = customers.drop_duplicates("customer_id", keep="last")
    ids = customers["customer_id"].astype(str).to_numpy(dtype=object)
    groups = strata(customers).to_numpy(dtype=object)
    names = sorted(set(groups.tolist()))
    counts = np.array([(groups == name).sum() for name in names], dtype=np.int64)
    total = int(counts.sum())
    take = min(size, total)
    exact = counts * take / max(total, 1)
    drawn = np.floor(exact).astype(np.int64)
    short = take - int(drawn.sum())
    if short:
        order = np.lexsort((np.arange(len(names)), -(exact - drawn)))  # largest remainder
        drawn[order[:short]] += 1
    chosen: list[str] = []
    for s, name in enumerate(names):
        members = np.sort(ids[groups == name].astype(str))
        rng = np.random.default_rng([seed, s])
        chosen += members[rng.permutation(len(members))[: drawn[s]]].tolist()
    return CustomerSample(
        population=total,
        seed=seed,
        strata={name: (int(counts[s]), int(drawn[s])) for s, name in enumerate(names)},
        ids=frozenset(chosen),
    )


def read_sample(
    data_dir: Path, size: int, seed: int, progress: Callable[[str], None] | None = None
) -> tuple[Tables, CustomerSample]:
    """The sampled customers' rows of every table, read one partition at a time."""
    sample = stratified_sample(
        read_columns(data_dir, "customers", list(STRATUM_COLUMNS)), size, seed
    )
    partitions = table_layout(data_dir).partitions
    parts: list[Tables] = []
    for k in range(partitions):
        if progress is not None:
            progress(f"reading the sample: partition {k + 1}/{partitions}")
        parts.append(restrict(read_partition(data_dir, k), sample.ids))
    tables = Tables(
        **{
            name: pd.concat([getattr(p, name) for p in parts], ignore_index=True)
            for name in ("customers", "holdings", "behaviour", "contracts")
        }
    )
    return tables, sample
