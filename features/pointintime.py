"""Point-in-time features: what the bank knew about each customer at the end of ``as_of``.

Every row dated after ``as_of`` is dropped *before* anything else happens, so no feature can
see the future however it is written. The remaining monthly rows are laid out as dense
``month x customer`` arrays over a fixed lookback window, which turns every feature into a
few vectorised numpy operations (1M customers x 12 months stays in seconds, not minutes).

Snapshots are the months present in the holdings table (behaviour has its own month grid,
because a bank may publish it on other dates or not at all). A customer with no holdings row
at a snapshot held nothing at that snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from datetime import date
from functools import cached_property
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.catalogue import Catalogue
from core.moments import MomentsConfig, default_moments
from core.tables import Tables, empty_contracts
from features.contract_features import known_at
from features.definitions import PANDAS_DTYPES, FeatureDef, feature_definitions
from features.profile_features import whole_months_between

LOOKBACK_SNAPSHOTS = 12
"""Monthly snapshots kept before ``as_of``; also caps ``months_held__*`` and friends."""

BEHAVIOUR_COLUMNS = ("logins", "balance", "inflow", "outflow", "active")
MASTER_DATES = ("birth_date", "joined_on", "left_on", "risk_assessed_on")
RECORD_CHUNK_ROWS = 10_000
T = TypeVar("T")


class PointInTimeContext:
    """The inputs of every feature definition, restricted to what was known at ``as_of``.

    Arrays are aligned with :attr:`index` (the population, one entry per customer):
    ``holdings`` is ``(product, snapshot, customer)`` bool, oldest snapshot first;
    ``behaviour[column]`` is ``(month, customer)`` float with NaN where unknown.
    ``moments`` holds the thresholds of the moment features (``core/moments.yaml``).
    """

    def __init__(
        self,
        *,
        as_of: pd.Timestamp,
        customers: pd.DataFrame,
        product_ids: tuple[str, ...],
        snapshots: tuple[pd.Timestamp, ...],
        holdings: np.ndarray,
        behaviour_months: tuple[pd.Timestamp, ...],
        behaviour: dict[str, np.ndarray],
        moments: MomentsConfig,
        contracts: pd.DataFrame | None = None,
    ) -> None:
        self.as_of = as_of
        self.moments = moments
        self.customers = customers
        self.index: pd.Index = customers.index
        self.product_ids = product_ids
        self.snapshots = snapshots
        self.holdings = holdings
        self.behaviour_months = behaviour_months
        self.behaviour = behaviour
        self.contracts = empty_contracts() if contracts is None else contracts
        self._shared: dict[str, Any] = {}

    def shared(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per context: what several definitions need (e.g. a statistic
        of every product's holding history) is computed in one pass, not once per feature."""
        if name not in self._shared:
            self._shared[name] = compute()
        return cast(T, self._shared[name])

    @property
    def size(self) -> int:
        return len(self.index)

    def series(self, values: np.ndarray | pd.Series) -> pd.Series:
        """Wrap per-customer values (in :attr:`index` order) as a feature series."""
        if isinstance(values, pd.Series):
            extension = isinstance(values.dtype, pd.api.extensions.ExtensionDtype)
            values = values.array if extension else values.to_numpy()
        return pd.Series(values, index=self.index, copy=False)

    def nulls(self) -> pd.Series:
        """An all-unknown feature (e.g. behaviour the bank does not publish)."""
        return pd.Series(np.full(self.size, np.nan), index=self.index)

    def product_position(self, product_id: str) -> int:
        return self.product_ids.index(product_id)

    def held_at(self, back: int) -> np.ndarray | None:
        """``(product, customer)`` holdings ``back`` snapshots before the latest, or None."""
        if back >= len(self.snapshots):
            return None
        return self.holdings[:, len(self.snapshots) - 1 - back, :]

    @cached_property
    def held_now(self) -> np.ndarray:
        """``(product, customer)`` holdings at the latest snapshot on or before ``as_of``."""
        latest = self.held_at(0)
        assert latest is not None  # a context always has at least one snapshot
        return latest

    def behaviour_window(self, column: str, months: int, skip: int = 0) -> np.ndarray:
        """``(month, customer)`` values of the ``months`` months ending ``skip`` before the latest.

        Fewer rows (possibly none) come back when the history is shorter.
        """
        values = self.behaviour[column]
        end = values.shape[0] - skip
        if end <= 0:
            return values[:0]
        return values[max(0, end - months) : end]

    def behaviour_at(self, column: str, back: int) -> np.ndarray:
        """Values ``back`` months before the latest behaviour month (NaN when unknown)."""
        window = self.behaviour_window(column, 1, skip=back)
        if window.shape[0] == 0:
            return np.full(self.size, np.nan)
        return window[0]


def _arrow_ids(values: pd.Series | np.ndarray | pd.Index) -> pa.Array | pa.ChunkedArray:
    """Customer ids as an Arrow large_string array (zero copy from an Arrow-backed column)."""
    if isinstance(values, pd.Series):
        values = values.astype(str)
    return pa.array(values, type=pa.large_string())


def _positions(ids: pa.Array | pa.ChunkedArray, value_set: pa.Array) -> np.ndarray:
    """The position in ``value_set`` of each of ``ids``, -1 where absent.

    Arrow's hash lookup (``index_in``): ~15x faster than ``Index.get_indexer`` on objects.
    """
    found = pc.index_in(ids, value_set=value_set)
    return np.asarray(found.fill_null(-1).to_numpy(), dtype=np.intp)


def _month_rows(table: pd.DataFrame, first: pd.Timestamp | None, as_of: pd.Timestamp) -> np.ndarray:
    """Positions of the rows of ``table`` dated in ``[first, as_of]`` (no lower bound: None)."""
    month = table["month"]
    keep = month <= as_of
    if first is not None:
        keep &= month >= first
    return np.flatnonzero(keep.to_numpy())


def _months(table: pd.DataFrame, rows: np.ndarray) -> tuple[pd.Timestamp, ...]:
    """The distinct months of ``table`` at ``rows``, oldest first, the latest lookback only."""
    months = pd.unique(table["month"].to_numpy()[rows])
    return tuple(pd.Timestamp(m) for m in np.sort(months))[-LOOKBACK_SNAPSHOTS:]


class _Population:
    """Who is in the feature frame at ``as_of``, and where each table row's customer is in it.

    The customers of the bank at ``as_of`` (joined or unknown, not yet left) and those who
    left ``win_back_months`` whole months ago or less (kept for win-back, flagged
    ``departed``); each with a holdings snapshot on or before ``as_of``. Every customer id
    of a table is looked up once (one Arrow hash probe per table), never grouped again.
    """

    def __init__(
        self,
        customers: pd.DataFrame,
        holdings: pd.DataFrame,
        holding_rows: np.ndarray,
        as_of: pd.Timestamp,
        win_back_months: int,
    ) -> None:
        joined = customers["joined_on"]
        left = customers["left_on"]
        recently_left = (left <= as_of) & (whole_months_between(left, as_of) <= win_back_months)
        known = (joined.isna() | (joined <= as_of)) & (left.isna() | (left > as_of) | recently_left)
        self._all_ids = _arrow_ids(customers["customer_id"])
        if isinstance(self._all_ids, pa.ChunkedArray):
            self._all_ids = self._all_ids.combine_chunks()
        holder = self.master_positions(holdings, holding_rows)
        self.holding_rows = holding_rows
        self.holder = holder
        """Position in ``customers`` of the customer of each of ``holding_rows`` (or -1)."""
        with_snapshot = np.zeros(len(customers), dtype=bool)
        with_snapshot[holder[holder >= 0]] = True
        self.rows = np.flatnonzero(known.to_numpy() & with_snapshot)
        """Positions in ``customers`` of the population, in the customers' order."""
        self._remap = np.full(len(customers) + 1, -1, dtype=np.intp)  # -1 (absent) stays -1
        self._remap[self.rows] = np.arange(len(self.rows))
        ids = customers["customer_id"].iloc[self.rows].astype(str).to_numpy(dtype=object)
        self.index = pd.Index(ids, name="customer_id", dtype=object)

    def master_positions(self, table: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """The position in the customers table of the customer of each of ``rows``, or -1."""
        ids = _arrow_ids(table["customer_id"])
        return _positions(ids.take(pa.array(rows)), self._all_ids)

    def positions(self, table: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """The position in :attr:`index` of the customer of each of ``rows``, or -1."""
        return self._remap[self.master_positions(table, rows)]

    def holding_positions(self, within: np.ndarray) -> np.ndarray:
        """:meth:`positions` of the holdings rows ``holding_rows[within]`` (looked up once)."""
        return self._remap[self.holder[within]]


def _flat_cells(
    table: pd.DataFrame,
    rows: np.ndarray,
    months: tuple[pd.Timestamp, ...],
    population: _Population,
    customer_pos: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows kept, their cell in a flat (month, customer) array)`` of ``rows`` of ``table``
    whose customer is in the population."""
    if customer_pos is None:
        customer_pos = population.positions(table, rows)
    dated = table["month"].to_numpy()[rows]
    grid = np.array([m.to_datetime64() for m in months]).astype(dated.dtype)
    month_pos = np.minimum(np.searchsorted(grid, dated), len(grid) - 1)
    month_pos[grid[month_pos] != dated] = -1
    keep = (customer_pos >= 0) & (month_pos >= 0)
    return rows[keep], month_pos[keep] * len(population.index) + customer_pos[keep]


def _held_values(column: pd.Series) -> np.ndarray:
    """A holdings column as held (> 0) or not; unknown is not held."""
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":
        return column.to_numpy() > 0
    return column.to_numpy(dtype=np.float64, na_value=0.0) > 0


def _holdings_cube(
    holdings: pd.DataFrame,
    snapshots: tuple[pd.Timestamp, ...],
    population: _Population,
    product_ids: tuple[str, ...],
) -> np.ndarray:
    """``(product, snapshot, customer)`` bool, filled one product column at a time."""
    size = len(population.index)
    cube = np.zeros((len(product_ids), len(snapshots), size), dtype=bool)
    past = population.holding_rows
    within = holdings["month"].to_numpy()[past] >= np.datetime64(snapshots[0])
    customer_pos = population.holding_positions(within)
    kept, cells = _flat_cells(holdings, past[within], snapshots, population, customer_pos)
    for p, product in enumerate(product_ids):
        cube[p].reshape(-1)[cells] = _held_values(holdings[product])[kept]
    return cube


def _as_float(column: pd.Series) -> np.ndarray:
    """Any nullable numeric or boolean column as float64 with NaN for unknown."""
    if column.dtype == object or pd.api.types.is_bool_dtype(column.dtype):
        column = column.astype("boolean") if column.dtype == object else column
        return column.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _behaviour_arrays(
    behaviour: pd.DataFrame, as_of: pd.Timestamp, population: _Population
) -> tuple[tuple[pd.Timestamp, ...], dict[str, np.ndarray]]:
    size = len(population.index)
    past = _month_rows(behaviour, None, as_of)
    months = _months(behaviour, past)
    arrays = {c: np.full((len(months), size), np.nan) for c in BEHAVIOUR_COLUMNS}
    if not months:
        return months, arrays
    rows = past[behaviour["month"].to_numpy()[past] >= np.datetime64(months[0])]
    kept, cells = _flat_cells(behaviour, rows, months, population)
    for column in BEHAVIOUR_COLUMNS:
        if column in behaviour.columns:
            arrays[column].reshape(-1)[cells] = _as_float(behaviour[column])[kept]
    return months, arrays


def _master_dates(customers: pd.DataFrame) -> pd.DataFrame:
    """The master date columns as datetimes (converted only where they are not already)."""
    convert = {
        c: pd.to_datetime(customers[c])
        for c in MASTER_DATES
        if c in customers.columns and not pd.api.types.is_datetime64_any_dtype(customers[c])
    }
    return customers.assign(**convert) if convert else customers


def build_context(
    tables: Tables, as_of: date, catalogue: Catalogue, moments: MomentsConfig | None = None
) -> PointInTimeContext:
    """Cut the tables at ``as_of`` and lay them out for the feature definitions.

    ``moments``: the moment rules (default: the shipped ``core/moments.yaml``).

    Raises ``ValueError`` when ``as_of`` precedes every holdings snapshot or the holdings
    table lacks a column for a holdable catalogue product.
    """
    as_of_ts = pd.Timestamp(as_of)
    product_ids = tuple(p.id for p in catalogue.holdable)
    missing = [pid for pid in product_ids if pid not in tables.holdings.columns]
    if missing:
        raise ValueError(
            f"holdings table has no column for catalogue product(s) {', '.join(missing)} "
            f"(catalogue {catalogue.version}); re-import the data with this catalogue"
        )
    holdings = tables.holdings
    past = _month_rows(holdings, None, as_of_ts)
    if len(past) == 0:
        earliest = holdings["month"].min()
        when = "no snapshots at all" if pd.isna(earliest) else f"earliest is {earliest:%Y-%m-%d}"
        raise ValueError(f"as_of {as_of_ts:%Y-%m-%d} precedes every holdings snapshot ({when})")
    snapshots = _months(holdings, past)

    customers = tables.customers.drop_duplicates("customer_id", keep="last")
    moments = moments or default_moments()
    population = _Population(customers, holdings, past, as_of_ts, moments.lifecycle.win_back_months)
    master = _master_dates(customers.iloc[population.rows].drop(columns="customer_id"))
    master = master.set_axis(population.index, axis=0)
    behaviour_months, behaviour = _behaviour_arrays(tables.behaviour, as_of_ts, population)
    return PointInTimeContext(
        as_of=as_of_ts,
        customers=master,
        product_ids=product_ids,
        snapshots=snapshots,
        holdings=_holdings_cube(holdings, snapshots, population, product_ids),
        behaviour_months=behaviour_months,
        behaviour=behaviour,
        moments=moments,
        contracts=known_at(tables.contracts, as_of_ts),
    )


def _coerce(values: pd.Series, definition: FeatureDef) -> pd.Series:
    """``values`` as the definition's dtype (``PANDAS_DTYPES``), building nullable integer
    and boolean columns from their data and null mask directly (no pass through objects)."""
    if definition.dtype in ("str", "str_list", "json"):
        if definition.dtype == "str" and values.dtype != object:
            codes, uniques = pd.factorize(values)  # each distinct text converted once
            table = np.empty(len(uniques) + 1, dtype=object)  # code -1 (null) -> None
            table[:-1] = np.asarray(uniques, dtype=object)
            return pd.Series(table[codes], index=values.index, dtype=object, copy=False)
        return values.astype(object).where(values.notna(), None)
    if definition.dtype == "date":
        return pd.to_datetime(values)
    raw = values.to_numpy() if isinstance(values.dtype, np.dtype) else None
    if raw is not None and definition.dtype in ("int", "bool"):
        masked = _masked_array(raw, definition.dtype)
        if masked is not None:
            return pd.Series(masked, index=values.index, copy=False)
    dtype: Any = PANDAS_DTYPES[definition.dtype]
    return values.astype(dtype)


def _masked_array(
    raw: np.ndarray, dtype: str
) -> pd.arrays.IntegerArray | pd.arrays.BooleanArray | None:
    """``raw`` (numpy bool, integer or float with NaN for null) as ``Int64`` / ``boolean``;
    None when it needs pandas' own cast (e.g. a float that is not a whole number)."""
    if raw.dtype.kind in "biu":
        mask = np.zeros(raw.shape, dtype=bool)
        data = raw
    elif raw.dtype.kind == "f":
        mask = np.isnan(raw)
        data = np.where(mask, 0.0, raw)
    else:
        return None
    if dtype == "int":
        ints = data.astype(np.int64)
        if raw.dtype.kind == "f" and not np.array_equal(ints, data):
            return None
        return pd.arrays.IntegerArray(ints, mask)
    if raw.dtype.kind == "f" and not np.isin(data, (0.0, 1.0)).all():
        return None
    return pd.arrays.BooleanArray(data.astype(bool), mask)


def compute_features(
    tables: Tables,
    as_of: date,
    catalogue: Catalogue,
    moments: MomentsConfig | None = None,
    names: Collection[str] | None = None,
) -> pd.DataFrame:
    """One row per customer of the bank at ``as_of``, one column per feature definition.

    Uses only rows dated on or before ``as_of`` (and master data as known then). Customers
    who left within the win-back window are included with ``departed`` true (training
    drops them: ``training.population``). An empty frame (with every column) comes back
    when no customer qualifies. ``names``: compute only these features (in definition
    order; a batch scorer needs its model's inputs, not all of them); an unknown name is
    a ``ValueError``.
    """
    context = build_context(tables, as_of, catalogue, moments)
    definitions = feature_definitions(catalogue)
    if names is not None:
        unknown = sorted(set(names) - {d.name for d in definitions})
        if unknown:
            raise ValueError(f"no feature definition named {', '.join(unknown)}")
        definitions = [d for d in definitions if d.name in set(names)]
    columns: dict[str, pd.Series] = {}
    for definition in definitions:
        values = definition.compute(context)
        if not values.index.equals(context.index):
            raise ValueError(f"feature {definition.name} is not indexed by the population")
        columns[definition.name] = _coerce(values, definition)
    frame = pd.DataFrame(columns, index=context.index, copy=False)
    frame.index.name = "customer_id"
    return frame


def _json_column(column: pd.Series) -> list[object]:
    """A column as plain Python values: NaN/NaT -> None, numpy scalars -> int/float/bool."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        column = column.dt.strftime("%Y-%m-%d")
    if pd.api.types.is_float_dtype(column.dtype) and not isinstance(
        column.dtype, pd.api.extensions.ExtensionDtype
    ):
        values = column.to_numpy()
        out = values.astype(object)
        out[~np.isfinite(values)] = None
        return out.tolist()
    untyped: Any = column  # pandas-stubs reject na_value=None, which pandas documents
    values = untyped.to_numpy(dtype=object, na_value=None).tolist()
    if column.dtype == object:
        # str_list features share immutable tuples between customers; JSON wants lists.
        return [list(v) if isinstance(v, tuple) else v for v in values]
    return values


def to_records(frame: pd.DataFrame) -> Iterator[tuple[str, dict[str, object]]]:
    """``(customer_id, record)`` pairs with JSON-ready values, converted column-wise per chunk."""
    names = [str(name) for name in frame.columns]
    for start in range(0, len(frame), RECORD_CHUNK_ROWS):
        chunk = frame.iloc[start : start + RECORD_CHUNK_ROWS]
        columns = [_json_column(chunk[name]) for name in chunk.columns]
        for customer_id, *values in zip(chunk.index, *columns, strict=True):
            yield str(customer_id), dict(zip(names, values, strict=True))
