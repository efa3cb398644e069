"""The one writer of result tables: ``<stem>.tsv`` for people, ``<stem>.parquet`` for code.

Metric tables (``metrics``, ``comparison_metrics``, the regulatory ``metrics`` / ``overfit``,
the genome-wide tables) all go through :func:`write_table`, so they share one format: a
tab-separated file with floats to 4 decimals, optionally preceded by ``# `` comment lines that
state how the numbers were obtained (a budget, a restriction), and the same table as Parquet
with full precision and the comment lines in its schema metadata (``methray.header``).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import storage

HEADER_KEY = b"methray.header"


def write_table(df: pd.DataFrame, stem: str, header: list[str] | None = None) -> None:
    """Write ``<stem>.tsv`` and ``<stem>.parquet`` atomically (local or ``s3://``).

    Parameters
    ----------
    df
        The table; written without its index.
    stem
        Path without extension.
    header
        Lines written before the TSV table as ``# <line>`` and stored in the Parquet schema
        metadata under ``methray.header`` (newline-joined). Read the TSV back with
        :func:`read_result` or ``pd.read_csv(path, sep="\\t", comment="#")``.
    """
    with storage.atomic_write(f"{stem}.tsv") as fh:
        for line in header or []:
            fh.write(f"# {line}\n")
        df.to_csv(fh, sep="\t", index=False, float_format="%.4f", lineterminator="\n")
    table = pa.Table.from_pandas(_parquet_safe(df), preserve_index=False)
    if header:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), HEADER_KEY: "\n".join(header).encode()})
    with storage.atomic_path(f"{stem}.parquet") as tmp:
        pq.write_table(table, tmp)


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with text-and-number columns (e.g. ``epochs`` with ``-`` for the baseline) as text.

    Parquet needs one type per column; the TSV shows such a column as written either way.
    """
    mixed = [c for c in df.columns if df[c].dtype == object and not df[c].map(lambda v: v is None or isinstance(v, str)).all()]
    if not mixed:
        return df
    return df.assign(**{c: df[c].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v)) for c in mixed})


def read_result(path: str) -> tuple[list[str], pd.DataFrame]:
    """Read a table written by :func:`write_table`: its header lines (without ``# ``) and the table.

    ``path`` is the ``.tsv`` or the ``.parquet`` file (full precision).
    """
    fs, p = storage.filesystem(path)
    if str(path).endswith(".parquet"):
        with fs.open(p, "rb") as fh:
            table = pq.read_table(fh)
        meta = (table.schema.metadata or {}).get(HEADER_KEY)
        return (meta.decode().split("\n") if meta else []), table.to_pandas()
    header = []
    with fs.open(p, "r") as fh:
        line = fh.readline()
        while line.startswith("# "):
            header.append(line[2:].rstrip("\n"))
            line = fh.readline()
    with fs.open(p, "r") as fh:
        return header, pd.read_csv(fh, sep="\t", comment="#")
