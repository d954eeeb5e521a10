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
from core.tables import PartitionedWriter, contract_products
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


def last_month_end(today: date) -> date:
    """The last day of the month before ``today``'s month."""
    return today.replace(day=1) - timedelta(days=1)


@app.command("import-santander")
def import_santander_command(
    path: Path = typer.Argument(..., help="train_ver2.csv (or .csv.gz) in the Kaggle format."),
    out: Path | None = typer.Option(None, help="Output folder (default: the data folder)."),
) -> None:
    """Import the Kaggle Santander product data into the canonical tables.

    Streams the file in chunks into ceil(customers / NBO_PARTITION_CUSTOMERS) partitions
    (memory: a chunk, one profile row per customer and one partition) and reports rows/s.
    A row with the wrong number of fields stops the import (exit 2, file:line:column) and
    writes nothing.

    Example: nbo data import-santander ../shared/data/santander/train_ver2.csv
    """
    from features.santander import import_santander_partitioned

    catalogue = _catalogue()
    target = out or get_settings().data_dir
    try:
        with _progress() as bar:
            task = bar.add_task(f"reading {path.name}", total=None)
            result = import_santander_partitioned(
                path,
                catalogue,
                target,
                get_settings().partition_customers,
                progress=lambda message: bar.update(task, description=message),
            )
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
        f"wrote {result.customers:,} customers, {result.holdings_rows:,} holdings rows in "
        f"{result.partitions} partition(s) to {target} in {result.seconds:.1f} s "
        f"({result.rows_per_second:,.0f} rows/s)"
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
