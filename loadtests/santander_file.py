"""Build a file in the Kaggle ``train_ver2.csv`` format, of any size, from the synthetic bank.

The competition file has 13,647,309 rows (about 950,000 customers x 17 months); the raw
data cannot be shipped, so the import at that size is tested on a file of the same
format made from the synthetic bank: one row per customer and month, the 48 columns in
the Kaggle order, products under their Santander codes. The bank is generated one
partition at a time (``features.synthetic.generate_partitions``) and appended to the file
partition by partition, so memory stays bounded whatever the size.

    python -m loadtests.santander_file --customers 1264000 --months 12 --out var/train_big.csv
    nbo data import-santander var/train_big.csv

(1,264,000 customers x 12 months gives 13,654,557 rows, the competition's size, once the
customers who joined late or left early are counted; 1,140,000 give 12,310,995.) The
customers are ``S0000042`` -> ``ncodpers`` 42; customers without a birth date get age
``NA`` (the importer rejects them, as it rejects such rows of the real file).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from core.catalogue import Catalogue, load_catalogue
from core.settings import get_settings
from core.tables import Tables
from features.synthetic import generate_partitions

HEADER = [
    *("fecha_dato", "ncodpers", "ind_empleado", "pais_residencia", "sexo", "age"),
    *("fecha_alta", "ind_nuevo", "antiguedad", "indrel", "ult_fec_cli_1t", "indrel_1mes"),
    *("tiprel_1mes", "indresi", "indext", "conyuemp", "canal_entrada", "indfall"),
    *("tipodom", "cod_prov", "nomprov", "ind_actividad_cliente", "renta", "segmento"),
]
"""The 24 profile columns of train_ver2.csv, in the file's order (the 24 products follow)."""
SEX = {"F": "H", "M": "V"}


def kaggle_rows(tables: Tables, catalogue: Catalogue) -> pd.DataFrame:
    """One row per customer and month in the ``train_ver2.csv`` columns (text)."""
    rows = tables.holdings.merge(tables.behaviour[["customer_id", "month", "active"]], how="left")
    master = tables.customers.set_index("customer_id")
    who = master.reindex(rows["customer_id"])
    month = pd.to_datetime(rows["month"])
    birth = pd.to_datetime(who["birth_date"]).reset_index(drop=True)
    joined = pd.to_datetime(who["joined_on"]).reset_index(drop=True)
    age = (month.dt.year - birth.dt.year) - (
        (month.dt.month < birth.dt.month)
        | ((month.dt.month == birth.dt.month) & (month.dt.day < birth.dt.day))
    ).astype(int)
    tenure = (month.dt.year - joined.dt.year) * 12 + (month.dt.month - joined.dt.month)
    active = rows["active"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    income = who["income"].astype("float64").to_numpy()
    private = who["tier"].astype(str).to_numpy() == "private"
    out = pd.DataFrame(
        {
            "fecha_dato": month.dt.strftime("%Y-%m-%d"),
            "ncodpers": rows["customer_id"].astype(str).str.lstrip("S").str.lstrip("0"),
            "ind_empleado": np.where(who["employee"].fillna(False).to_numpy(dtype=bool), "S", "N"),
            "pais_residencia": "ES",
            "sexo": who["sex"].map(SEX).fillna("").to_numpy(),
            "age": np.where(age.isna(), "NA", age.fillna(0).astype(int).astype(str)),
            "fecha_alta": joined.dt.strftime("%Y-%m-%d").fillna(""),
            "ind_nuevo": "0",
            "antiguedad": tenure.fillna(0).clip(lower=0).astype(int).astype(str),
            "indrel": "1",
            "ult_fec_cli_1t": "",
            "indrel_1mes": "1",
            "tiprel_1mes": np.where(active, "A", "I"),
            "indresi": np.where(who["resident"].fillna(True).to_numpy(dtype=bool), "S", "N"),
            "indext": "N",
            "conyuemp": "",
            "canal_entrada": who["acquisition_channel"].fillna("KHE").to_numpy(),
            "indfall": "N",
            "tipodom": "1",
            "cod_prov": "28",
            "nomprov": who["region"].fillna("MADRID").to_numpy(),
            "ind_actividad_cliente": np.where(active, "1", "0"),
            "renta": np.where(np.isnan(income), "NA", np.round(income, 2).astype(str)),
            "segmento": np.where(private, "01 - TOP", "02 - PARTICULARES"),
        }
    )
    assert list(out.columns) == HEADER
    for product in catalogue.holdable:
        if product.santander_code:
            out[product.santander_code] = rows[product.id].astype(int).astype(str).to_numpy()
    return out


def write_file(
    out: Path,
    customers: int,
    months: int,
    seed: int,
    end_month: date,
    catalogue: Catalogue,
    partitions: int,
) -> int:
    """Write the file (gzip when ``out`` ends in .gz); returns the rows written."""
    written = 0
    started = time.perf_counter()
    compression: Literal["gzip"] | None = "gzip" if out.suffix == ".gz" else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    for k, tables in generate_partitions(customers, months, seed, catalogue, end_month, partitions):
        rows = kaggle_rows(tables, catalogue)
        rows.to_csv(out, mode="a", header=written == 0, index=False, compression=compression)
        written += len(rows)
        rate = written / (time.perf_counter() - started)
        print(
            f"partition {k + 1}/{partitions}: {written:,} rows ({rate:,.0f} rows/s)",
            file=sys.stderr,
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a train_ver2.csv-format file from the synthetic bank.",
        epilog="Example: python -m loadtests.santander_file --customers 1264000 --months 12 "
        "--out var/train_big.csv",
    )
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end-month", type=date.fromisoformat, default=date(2016, 5, 31))
    parser.add_argument(
        "--partitions", type=int, default=None, help="default: from NBO_PARTITION_CUSTOMERS"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = get_settings()
    from core.partitions import partition_count

    partitions = args.partitions or partition_count(args.customers, settings.partition_customers)
    catalogue = load_catalogue(settings.catalogue_path)
    rows = write_file(
        args.out, args.customers, args.months, args.seed, args.end_month, catalogue, partitions
    )
    print(f"wrote {rows:,} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
