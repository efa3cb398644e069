"""Stage 1, prepare: methylation files -> one CpG table in Parquet, partitioned by chrom.

For each tissue:

1. read the file (:mod:`methray.io.methylation`);
2. check every chromosome and coordinate against the reference (unknown chromosome or a
   position past the contig end is an error naming the file and line);
3. assign strands: a measured C followed by G is the + strand C of a CpG at ``pos``; a
   measured G-position C (reference G preceded by C) is the - strand C of the CpG at
   ``pos - 1``; anything else is *not a CpG* and is dropped and counted. More than
   ``prepare.max_non_cpg_fraction`` (default 1%) of such sites fails the run: the file is
   probably for another assembly or uses the other coordinate base (0- vs 1-based);
4. merge the two strands of each CpG (counts summed; for count-free bedGraphs, betas averaged);
5. coverage filter: keep CpGs with ``n_total >= prepare.min_coverage`` (default 5 reads);
   sites without counts (bedGraph) are kept and counted as "coverage unknown";
6. flag CpG-island membership from ``cpg_islands`` (BED);
7. assign the hold-out split (:mod:`methray.split`).

The table (``<out_dir>/cpg_table``) has one row per (tissue, CpG): ``chrom`` (hive partition),
``pos`` (int64, 0-based C on the + strand), ``n_meth``, ``n_total`` (float64; NaN when the
format has no counts), ``beta`` (float64, 0..1), ``tissue`` (str), ``in_cpg_island`` (bool),
``split`` (str: train / val / test / gap). It is written under a temporary name and
renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from . import split as splitting
from . import storage
from .config import RunConfig
from .encoding import MAX_FLANK
from .errors import MethrayError
from .genome import Reference, open_reference
from .io.bed import load_islands
from .io.methylation import read_methylation

log = logging.getLogger(__name__)


@dataclass
class TissueCounts:
    """What happened to one tissue's rows (all counts are numbers of rows or CpGs)."""

    tissue: str
    file: str
    rows_read: int = 0
    non_cpg_dropped: int = 0
    cpgs: int = 0  # distinct CpGs after strand merging
    cpgs_both_strands: int = 0
    low_coverage_dropped: int = 0
    coverage_unknown: int = 0
    kept: int = 0
    in_cpg_island: int = 0
    split: dict = field(default_factory=dict)


def call_cpgs(raw: pd.DataFrame, ref: Reference, source: str, max_non_cpg_fraction: float, counts: TissueCounts) -> pd.DataFrame:
    """Check measured C's against the reference and merge the two strands of each CpG.

    Parameters
    ----------
    raw
        Output of :func:`methray.io.methylation.read_methylation`.
    ref
        The reference genome.
    source
        File name for error messages.

    Returns
    -------
    pd.DataFrame
        One row per CpG: ``chrom, pos`` (+ strand C, 0-based), ``n_meth, n_total, beta``.

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
    counts.rows_read = len(raw)
    counts.non_cpg_dropped = int(len(raw) - sum(len(p) for p in parts))
    if counts.rows_read and counts.non_cpg_dropped / counts.rows_read > max_non_cpg_fraction:
        line, chrom, pos = min(non_cpg_examples)
        raise MethrayError(
            f"{source}: {counts.non_cpg_dropped} of {counts.rows_read} sites "
            f"({100 * counts.non_cpg_dropped / counts.rows_read:.1f}%, limit {100 * max_non_cpg_fraction:g}%) are not CpGs "
            f"in {ref.path} (first at line {line}: {chrom}:{pos} 0-based); wrong assembly or coordinate base (0- vs 1-based)?"
        )
    sites = pd.concat(parts, ignore_index=True) if parts else raw.iloc[:0]
    grouped = sites.groupby(["chrom", "pos"], sort=False)
    merged = grouped.agg(n_meth=("n_meth", "sum"), n_total=("n_total", "sum"), beta_mean=("beta", "mean"), strands=("pos", "size"))
    merged = merged.reset_index()
    has_counts = grouped["n_total"].count().to_numpy() > 0
    merged.loc[~has_counts, ["n_meth", "n_total"]] = np.nan
    merged["beta"] = np.where(has_counts, merged["n_meth"] / merged["n_total"], merged["beta_mean"])
    counts.cpgs = len(merged)
    counts.cpgs_both_strands = int((merged["strands"] > 1).sum())
    return merged[["chrom", "pos", "n_meth", "n_total", "beta"]]


def prepare(cfg: RunConfig) -> list[TissueCounts]:
    """Run the prepare stage for every tissue of ``cfg`` and write the CpG table.

    Writes ``<out_dir>/cpg_table/`` (Parquet, hive-partitioned by chrom),
    ``<out_dir>/split_regions.tsv`` and ``<out_dir>/prepare_report.json``.

    Returns
    -------
    list[TissueCounts]
        Counts of everything read, dropped, merged, filtered and kept, per tissue.

    Raises
    ------
    MethrayError
        Any input problem (see :func:`call_cpgs` and the readers); nothing is written then.
    """
    ref = open_reference(cfg.reference)
    islands = load_islands(cfg.cpg_islands)
    tables, reports = [], []
    for tissue in cfg.tissues:
        counts = TissueCounts(tissue.name, tissue.path)
        raw = read_methylation(tissue.path, tissue.format)
        cpgs = call_cpgs(raw, ref, tissue.path, cfg.prepare.max_non_cpg_fraction, counts)
        known = cpgs["n_total"].notna()
        low = known & (cpgs["n_total"] < cfg.prepare.min_coverage)
        counts.coverage_unknown = int((~known).sum())
        counts.low_coverage_dropped = int(low.sum())
        cpgs = cpgs[~low].copy()
        cpgs["tissue"] = tissue.name
        cpgs["in_cpg_island"] = islands.flag(cpgs["chrom"].to_numpy(), cpgs["pos"].to_numpy())
        counts.kept = len(cpgs)
        counts.in_cpg_island = int(cpgs["in_cpg_island"].sum())
        tables.append(cpgs)
        reports.append(counts)
    table = pd.concat(tables, ignore_index=True)
    if table.empty:
        raise MethrayError("prepare: no CpG passed the filters; nothing to train on")
    regions = splitting.plan_regions(table[["chrom", "pos"]].drop_duplicates(), ref.chroms, ref.sizes, cfg.split)
    table["split"] = splitting.assign(regions, table["chrom"].to_numpy(), table["pos"].to_numpy(), cfg.split.gap_bp)
    for counts in reports:
        labels = table.loc[table["tissue"] == counts.tissue, "split"]
        counts.split = {s: int((labels == s).sum()) for s in splitting.SPLITS}
    rank = {c: i for i, c in enumerate(ref.chroms)}
    table = table.sort_values(["chrom", "pos", "tissue"], key=lambda s: s.map(rank) if s.name == "chrom" else s, kind="stable")
    write_partitioned(table, cfg.cpg_table, cfg.prepare.rows_per_file)
    with storage.atomic_write(cfg.path("split_regions.tsv")) as fh:
        regions.to_csv(fh, sep="\t", index=False)
    with storage.atomic_write(cfg.path("prepare_report.json")) as fh:
        json.dump([asdict(r) for r in reports], fh, indent=2)
    return reports


def write_partitioned(table: pd.DataFrame, out: str, rows_per_file: int) -> None:
    """Write a table as Parquet partitioned by ``chrom`` (hive), atomically.

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


def read_table(path: str, *, tissue: str | None = None, split: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Read (part of) a CpG table into pandas, in file order (chrom, pos)."""
    arrow_fs, p = storage.arrow_location(path)
    ds = pads.dataset(p, format="parquet", partitioning="hive", filesystem=arrow_fs)
    flt = None
    for col, value in (("tissue", tissue), ("split", split)):
        if value is not None:
            cond = pads.field(col) == value
            flt = cond if flt is None else flt & cond
    return ds.to_table(filter=flt, columns=columns).to_pandas()
