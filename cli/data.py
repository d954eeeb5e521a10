"""``nbo data``: import the Santander data or generate a synthetic bank into the data folder."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cli.errors import fail
from cli.progress import spinner
from core.catalogue import Catalogue, CatalogueError, load_catalogue
from core.partitions import partition_count
from core.settings import get_settings
from core.tables import PartitionedWriter, Tables, contract_products, write_tables
from features.errors import DataFormatError

app = typer.Typer(no_args_is_help=True)
console = Console()


def _catalogue() -> Catalogue:
    try:
        return load_catalogue(get_settings().catalogue_path)
    except CatalogueError as exc:
        raise fail(str(exc)) from None


def _progress() -> Progress:
    return spinner(console)


def _counts(tables: Tables) -> str:
    return (
        f"{len(tables.customers):,} customers, {len(tables.holdings):,} holdings rows, "
        f"{len(tables.behaviour):,} behaviour rows"
    )


def _write(tables: Tables, target: Path, catalogue: Catalogue) -> None:
    """Write the set partitioned: ``NBO_PARTITION_CUSTOMERS`` customers per partition."""
    partitions = partition_count(len(tables.customers), get_settings().partition_customers)
    write_tables(
        tables,
        target,
        [p.id for p in catalogue.holdable],
        contract_products(catalogue),
        partitions=partitions,
    )


def last_month_end(today: date) -> date:
    """The last day of the month before ``today``'s month."""
    return today.replace(day=1) - timedelta(days=1)


@app.command("import-santander")
def import_santander_command(
    path: Path = typer.Argument(..., help="train_ver2.csv (or .csv.gz) in the Kaggle format."),
    out: Path | None = typer.Option(None, help="Output folder (default: the data folder)."),
) -> None:
    """Import the Kaggle Santander product data into the canonical tables.

    Example: nbo data import-santander ../shared/data/santander/train_ver2.csv
    """
    from features.santander import import_santander

    catalogue = _catalogue()
    target = out or get_settings().data_dir
    started = time.perf_counter()
    try:
        with _progress() as bar:
            task = bar.add_task(f"reading {path.name}", total=None)
            result = import_santander(
                path,
                catalogue,
                progress=lambda rows: bar.update(task, description=f"{rows:,} rows read"),
            )
            bar.update(task, description="writing tables")
            _write(result.tables, target, catalogue)
    except DataFormatError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{path}: {exc.strerror or exc}") from None

    report = Table(title="Santander import")
    report.add_column("kind")
    report.add_column("what")
    report.add_column("rows", justify="right")
    report.add_row("read", "data rows", f"{result.rows_read:,}")
    report.add_row("rejected", "total", f"{result.rows_rejected:,}")
    for reason, count in result.rejections.most_common():
        report.add_row("rejected", reason, f"{count:,}")
    for warning, count in result.warnings.most_common():
        report.add_row("warning", warning, f"{count:,}")
    console.print(report)
    months = ", ".join(f"{m:%Y-%m-%d}" for m in result.months)
    console.print(f"months: {months}")
    for note in result.notes:
        console.print(note)
    console.print(
        f"wrote {_counts(result.tables)} to {target} in {time.perf_counter() - started:.1f} s"
    )


@app.command("generate")
def generate_command(
    customers: int = typer.Option(100_000, min=1, help="Number of customers."),
    months: int = typer.Option(12, min=1, help="Monthly snapshots."),
    seed: int = typer.Option(7, help="Random seed (same seed, same bank)."),
    end_month: str | None = typer.Option(
        None, help="Last snapshot, a month end YYYY-MM-DD (default: the last one before today)."
    ),
    out: Path | None = typer.Option(None, help="Output folder (default: the data folder)."),
) -> None:
    """Generate a synthetic bank (customers, monthly holdings, behaviour, churners).

    The bank is made and written one partition at a time (ceil(customers /
    NBO_PARTITION_CUSTOMERS) partitions), so memory follows the partition size; it is the
    same for the same customers, seed and partition count.

    Example: nbo data generate --customers 100000 --months 12 --seed 7
    """
    from features.synthetic import generate_partitions

    try:
        end = date.fromisoformat(end_month) if end_month else last_month_end(date.today())
    except ValueError:
        raise fail(f"--end-month {end_month!r} is not a date like 2025-12-31") from None
    catalogue = _catalogue()
    target = out or get_settings().data_dir
    partitions = partition_count(customers, get_settings().partition_customers)
    started = time.perf_counter()
    rows = {"customers": 0, "holdings": 0, "behaviour": 0, "left": 0}
    try:
        with (
            _progress() as bar,
            PartitionedWriter(
                target,
                [p.id for p in catalogue.holdable],
                contract_products(catalogue),
                partitions,
            ) as writer,
        ):
            task = bar.add_task("generating", total=None)
            for k, tables in generate_partitions(
                customers,
                months,
                seed,
                catalogue,
                end,
                partitions,
                progress=lambda stage: bar.update(task, description=stage),
            ):
                bar.update(task, description=f"writing partition {k + 1}/{partitions}")
                writer.write(k, tables)
                rows["customers"] += len(tables.customers)
                rows["holdings"] += len(tables.holdings)
                rows["behaviour"] += len(tables.behaviour)
                rows["left"] += int(tables.customers["left_on"].notna().sum())
                del tables
            writer.commit()
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"wrote {rows['customers']:,} customers, {rows['holdings']:,} holdings rows, "
        f"{rows['behaviour']:,} behaviour rows ({rows['left']:,} left the bank) in "
        f"{partitions} partition(s) to {target} in {time.perf_counter() - started:.1f} s"
    )
