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
from dataclasses import dataclass, field
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
    """Rows that are not a C of a reference CpG, ``past_contig_end`` included."""
    cpgs: int
    """Distinct CpGs after strand merging."""
    cpgs_both_strands: int
    past_contig_end: int = 0
    duplicates_summed: int = 0
    """Rows added to an earlier row of the same site and strand (``duplicates="sum"``)."""
    contigs_renamed: dict = field(default_factory=dict)
    """File contig name -> reference name, for every name that was mapped."""


_C, _G = 1, 2  # base codes (methray.encoding)
_MITO = ("chrM", "chrMT", "MT", "M")


class ContigNames:
    """Maps the contig names of a file to those of the reference.

    An explicit ``contig_map`` wins; otherwise a name of the reference is used as is; with
    ``match`` on, a name that differs only by the ``chr`` prefix (``22`` / ``chr22``) or is a
    mitochondrial alias (``MT``, ``M``, ``chrM``, ``chrMT``) is mapped when exactly one
    reference contig fits. Every mapping used is recorded in ``renamed``.
    """

    def __init__(self, ref: Reference, explicit: dict | None = None, match: bool = True):
        self.ref, self.explicit, self.match = ref, dict(explicit or {}), match
        self.renamed: dict[str, str] = {}
        self._cache: dict[str, str | None] = {}

    def candidates(self, name: str) -> list[str]:
        bare = name[3:] if name.startswith("chr") else name
        names = {bare, "chr" + bare}
        if name in _MITO:
            names |= set(_MITO)
        return sorted(n for n in names if n != name and n in self.ref.sizes)

    def __call__(self, name: str, where: str) -> str:
        if name not in self._cache:
            target = self.explicit.get(name)
            if target is not None and target not in self.ref.sizes:
                raise MethrayError(f"{where}: contig_map maps {name!r} to {target!r}, which is not in {self.ref.path}")
            if target is None and name in self.ref.sizes:
                target = name
            if target is None and self.match:
                fits = self.candidates(name)
                if len(fits) > 1:
                    raise MethrayError(f"{where}: contig {name!r} could be any of {', '.join(fits)} in {self.ref.path}; set contig_map for this tissue")
                target = fits[0] if fits else None
            if target is None and not (name.isascii() and name.isprintable()):
                raise MethrayError(f"{where}: expected a text table, found binary or non-ASCII data")
            if target is None and not (name.isascii() and name.isprintable()):
                raise MethrayError(f"{where}: expected a text table, found binary or non-ASCII data")
            if target is None:
                self.ref.check_chrom(name, where)  # raises with the reference's names
            if target != name:
                self.renamed[name] = target
            self._cache[name] = target
        return self._cache[name]


def call_sites(
    chunks,
    ref: Reference,
    source: str,
    max_non_cpg_fraction: float,
    *,
    contig_map: dict | None = None,
    match_contig_names: bool = True,
    duplicates: str = "error",
) -> tuple[pd.DataFrame, CallCounts]:
    """Check measured C's against the reference, chunk by chunk, and merge the strands of each CpG.

    A row is the + strand C of a CpG when the reference has C at ``pos`` and G at ``pos + 1``,
    the - strand C when it has G at ``pos`` and C at ``pos - 1`` (a strand stated by the file
    must agree). Anything else, including a position past the contig end, is *not a CpG*:
    counted and dropped, and more than ``max_non_cpg_fraction`` of them fails the run. The
    same site on the same strand twice is an error naming both lines, or with
    ``duplicates="sum"`` their counts are added (counted). Only compact numpy columns are
    kept between chunks.

    Parameters
    ----------
    chunks
        Iterable of tables with :data:`methray.io.methylation.COLUMNS` (or one such table;
        without a ``strand`` column every strand is taken from the reference).
    ref
        The reference genome.
    source
        File name for error messages.

    Returns
    -------
    sites : pd.DataFrame
        One row per CpG, in reference order: ``chrom`` (reference name), ``pos`` (int64, + strand
        C, 0-based), ``n_meth, n_total`` (float64, NaN without counts), ``beta`` (float64).
    counts : CallCounts
        Rows, non-CpG rows (past a contig end among them), summed duplicates, renamed
        contigs, CpGs, CpGs measured on both strands.

    Raises
    ------
    MethrayError
        Unknown contig, ambiguous contig name, duplicate site, or too many non-CpG sites.
    """
    if isinstance(chunks, pd.DataFrame):
        chunks = [chunks]
    names = ContigNames(ref, contig_map, match_contig_names)
    rank = {c: i for i, c in enumerate(ref.chroms)}
    keep: dict[str, list] = {k: [] for k in ("chrom", "pos", "strand", "n_meth", "n_total", "beta", "line")}
    first_bad, c_or_g, rows, past_end = None, 0, 0, 0
    for chunk in chunks:
        rows += len(chunk)
        codes_in, labels = pd.factorize(chunk["chrom"], sort=False)
        for k, label in enumerate(labels):
            idx = np.flatnonzero(codes_in == k)
            lines = chunk["line"].to_numpy()[idx]
            chrom = names(str(label), f"{source}:{lines[0]}")
            pos = chunk["pos"].to_numpy()[idx]
            stated = chunk["strand"].to_numpy()[idx] if "strand" in chunk else np.zeros(idx.size, np.int8)
            inside = (pos >= 0) & (pos < ref.sizes[chrom])
            past_end += int((~inside).sum())
            codes = ref.codes(chrom)
            p = np.where(inside, pos, 0) + MAX_FLANK
            at, nxt, prev = codes[p], codes[p + 1], codes[p - 1]
            plus = inside & (stated >= 0) & (at == _C) & (nxt == _G)
            minus = inside & (stated <= 0) & (at == _G) & (prev == _C)
            ok = plus | minus
            if not ok.all():
                i = int(np.argmin(ok))
                if first_bad is None or lines[i] < first_bad[0]:
                    first_bad = (int(lines[i]), chrom, int(pos[i]))
                c_or_g += int((inside & ~ok & ((at == _C) | (at == _G))).sum())
            sel = np.flatnonzero(ok)
            keep["chrom"].append(np.full(sel.size, rank[chrom], np.int32))
            keep["pos"].append(np.where(plus[sel], pos[sel], pos[sel] - 1))
            keep["strand"].append(np.where(plus[sel], 1, -1).astype(np.int8))
            for col in ("n_meth", "n_total", "beta"):
                keep[col].append(chunk[col].to_numpy(np.float64)[idx][sel])
            keep["line"].append(lines[sel])
    sites = {k: (np.concatenate(v) if v else np.array([], dtype=np.int64)) for k, v in keep.items()}
    non_cpg = rows - len(sites["pos"])
    if rows and non_cpg / rows > max_non_cpg_fraction:
        line, chrom, pos = first_bad
        hint = "wrong assembly or coordinate base (0- vs 1-based)?"
        inside = non_cpg - past_end
        if inside and c_or_g / inside >= 0.9:
            hint = (f"{100 * c_or_g / inside:.0f}% of them are C/G of the reference outside a CpG: non-CpG calls (CHG/CHH) "
                    f"in a format without a context column? Keep only CpG calls; else wrong assembly or coordinate base (0- vs 1-based)?")
        raise MethrayError(
            f"{source}: {non_cpg} of {rows} sites "
            f"({100 * non_cpg / rows:.1f}%, limit {100 * max_non_cpg_fraction:g}%) are not CpGs "
            f"in {ref.path} ({past_end} past a contig end; first at line {line}: {chrom}:{pos} 0-based); {hint}"
        )
    df = pd.DataFrame(sites)
    df["chrom"] = df["chrom"].astype(np.int32)
    df = df.sort_values(["chrom", "pos", "strand", "line"], kind="stable", ignore_index=True)
    ch, ps, sd = (df[k].to_numpy() for k in ("chrom", "pos", "strand"))
    dup = np.zeros(len(df), dtype=bool)
    dup[1:] = (ch[1:] == ch[:-1]) & (ps[1:] == ps[:-1]) & (sd[1:] == sd[:-1])
    if dup.any():
        if duplicates != "sum":
            i = int(np.argmax(dup))
            r = df.iloc[i]
            strand = "+" if r["strand"] > 0 else "-"
            raise MethrayError(
                f"{source}:{int(r['line'])}: expected one row per site and strand; line {int(df['line'].iloc[i - 1])} has the same "
                f"{strand} strand C of the CpG at {ref.chroms[int(r['chrom'])]}:{int(r['pos'])} (0-based); "
                f"set duplicates: sum for this tissue to add their counts"
            )
    n_summed = int(dup.sum())
    grouped = df.groupby(["chrom", "pos"], sort=True)
    strands = grouped["strand"].nunique()
    merged = grouped.agg(n_meth=("n_meth", "sum"), n_total=("n_total", "sum"), beta_mean=("beta", "mean")).reset_index()
    has_counts = grouped["n_total"].count().to_numpy() > 0
    merged.loc[~has_counts, ["n_meth", "n_total"]] = np.nan
    merged["beta"] = np.where(has_counts, merged["n_meth"] / merged["n_total"].where(merged["n_total"] > 0), merged["beta_mean"])
    merged["chrom"] = np.asarray(ref.chroms, dtype=object)[merged["chrom"].to_numpy()] if len(merged) else merged["chrom"].astype(object)
    counts = CallCounts(rows, non_cpg, len(merged), int((strands.to_numpy() > 1).sum()), past_end, n_summed, dict(names.renamed))
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
