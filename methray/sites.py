"""The measured-sites table: per-tissue methylation at the CpGs of the reference.

Written by ``methray prepare`` (:func:`methray.prepare.prepare`) into ``<out_dir>/cpg_table``;
not to be confused with the reference's CpG catalogue (:mod:`methray.cpgs`, every CpG of a
genome, no measurements). One row per (tissue, CpG): ``chrom`` (hive partition), ``pos``
(int64, 0-based C on the + strand), ``n_meth``, ``n_total`` (float64; NaN when the format has
no counts), ``beta`` (float64, 0..1), ``tissue`` (str), ``in_cpg_island`` (bool), ``split``
(str: train / val / test / gap).

Here: :func:`call_sites` (measured C's -> CpGs of the reference, strands merged), the writer
:func:`write_sites` and the readers :func:`read_sites` (pandas) and :func:`sites_dataset`
(Ray Data).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from . import storage
from .encoding import MAX_FLANK
from .errors import MethrayError
from .genome import Reference

if TYPE_CHECKING:
    import ray


@dataclass(frozen=True)
class CallCounts:
    """What :func:`call_sites` did with a file's rows (numbers of rows or CpGs)."""

    rows_read: int
    non_cpg_dropped: int
    cpgs: int
    """Distinct CpGs after strand merging."""
    cpgs_both_strands: int


def call_sites(raw: pd.DataFrame, ref: Reference, source: str, max_non_cpg_fraction: float) -> tuple[pd.DataFrame, CallCounts]:
    """Check measured C's against the reference and merge the two strands of each CpG.

    Parameters
    ----------
    raw
        Output of :func:`methray.io.methylation.read_methylation`.
    ref
        The reference genome.
    source
        File name for error messages.
    max_non_cpg_fraction
        Fail when more than this fraction of the rows are not a C of a reference CpG.

    Returns
    -------
    sites : pd.DataFrame
        One row per CpG: ``chrom, pos`` (+ strand C, 0-based), ``n_meth, n_total, beta``.
    counts : CallCounts
        Rows read, rows dropped as not CpG, CpGs, CpGs measured on both strands.

    Raises
    ------
    MethrayError
        Unknown chromosome, position past the contig end, or too many non-CpG sites.
    """
    parts = []
    non_cpg_examples = []
    for chrom, grp in raw.groupby("chrom", sort=False):
        if chrom not in ref.sizes:
            first = int(grp["line"].iloc[0])
            ref.check_chrom(str(chrom), f"{source}:{first}")
        pos = grp["pos"].to_numpy(np.int64)
        past = pos >= ref.sizes[chrom]
        if past.any():
            i = int(np.argmax(past))
            raise MethrayError(
                f"{source}:{grp['line'].iloc[i]}: position {pos[i]} is past the end of {chrom} "
                f"({ref.sizes[chrom]} bp in {ref.path}); wrong assembly?"
            )
        codes = ref.codes(chrom)
        at, nxt, prev = codes[pos + MAX_FLANK], codes[pos + MAX_FLANK + 1], codes[pos + MAX_FLANK - 1]
        plus = (at == 1) & (nxt == 2)
        minus = (at == 2) & (prev == 1)
        ok = plus | minus
        if not ok.all():
            bad = grp[~ok]
            non_cpg_examples.append((int(bad["line"].iloc[0]), chrom, int(bad["pos"].iloc[0])))
        sub = grp[ok].assign(pos=np.where(plus[ok], pos[ok], pos[ok] - 1))
        parts.append(sub)
    rows_read = len(raw)
    non_cpg = int(rows_read - sum(len(p) for p in parts))
    if rows_read and non_cpg / rows_read > max_non_cpg_fraction:
        line, chrom, pos = min(non_cpg_examples)
        raise MethrayError(
            f"{source}: {non_cpg} of {rows_read} sites "
            f"({100 * non_cpg / rows_read:.1f}%, limit {100 * max_non_cpg_fraction:g}%) are not CpGs "
            f"in {ref.path} (first at line {line}: {chrom}:{pos} 0-based); wrong assembly or coordinate base (0- vs 1-based)?"
        )
    sites = pd.concat(parts, ignore_index=True) if parts else raw.iloc[:0]
    grouped = sites.groupby(["chrom", "pos"], sort=False)
    merged = grouped.agg(n_meth=("n_meth", "sum"), n_total=("n_total", "sum"), beta_mean=("beta", "mean"), strands=("pos", "size"))
    merged = merged.reset_index()
    has_counts = grouped["n_total"].count().to_numpy() > 0
    merged.loc[~has_counts, ["n_meth", "n_total"]] = np.nan
    merged["beta"] = np.where(has_counts, merged["n_meth"] / merged["n_total"], merged["beta_mean"])
    counts = CallCounts(rows_read, non_cpg, len(merged), int((merged["strands"] > 1).sum()))
    return merged[["chrom", "pos", "n_meth", "n_total", "beta"]], counts


def write_sites(table: pd.DataFrame, out: str, rows_per_file: int) -> None:
    """Write the sites table as Parquet partitioned by ``chrom`` (hive), atomically.

    Several files per chromosome (``rows_per_file``) let Ray Data read in parallel. Locally
    the dataset is written into a temporary sibling directory and renamed when complete; an
    existing table under ``out`` is replaced.
    """
    data = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    kwargs = dict(
        format="parquet",
        partitioning=pads.partitioning(pa.schema([("chrom", pa.string())]), flavor="hive"),
        max_rows_per_file=rows_per_file,
        max_rows_per_group=min(rows_per_file, 1 << 20),
        existing_data_behavior="overwrite_or_ignore",
    )
    if storage.is_remote(out):
        fs, path = storage.filesystem(out)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        arrow_fs, path = storage.arrow_location(out)
        pads.write_dataset(data, path, filesystem=arrow_fs, **kwargs)
        return
    work = storage.staging_dir(os.path.abspath(out))
    try:
        pads.write_dataset(data, work, **kwargs)
        storage.replace_dir(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sites_dataset(table: str, *, tissue: str | None = None, split: str | list[str] | None = None) -> "ray.data.Dataset":
    """Read (a filtered part of) the sites table with Ray Data.

    Parameters
    ----------
    table
        The table's directory (local or ``s3://``).
    tissue, split
        Row filters, pushed down into the Parquet reader.
    """
    import ray
    from ray.data.expressions import col

    arrow_fs, path = storage.arrow_location(table)
    ds = ray.data.read_parquet(path, filesystem=arrow_fs, partitioning=ray.data.datasource.partitioning.Partitioning("hive"))
    pred = None
    if tissue is not None:
        pred = col("tissue") == tissue
    if split is not None:
        splits = [split] if isinstance(split, str) else list(split)
        cond = col("split").is_in(splits)
        pred = cond if pred is None else pred & cond
    return ds.filter(expr=pred) if pred is not None else ds


def read_sites(path: str, *, tissue: str | None = None, split: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Read (part of) the sites table at ``path`` into pandas, in file order (chrom, pos, tissue).

    ``tissue`` and ``split`` filter rows as in :func:`sites_dataset`; ``columns`` selects
    columns (default all; ``chrom`` is the hive partition).
    """
    arrow_fs, p = storage.arrow_location(path)
    ds = pads.dataset(p, format="parquet", partitioning="hive", filesystem=arrow_fs)
    flt = None
    for col, value in (("tissue", tissue), ("split", split)):
        if value is not None:
            cond = pads.field(col) == value
            flt = cond if flt is None else flt & cond
    return ds.to_table(filter=flt, columns=columns).to_pandas()
