"""The measured-sites table: per-tissue methylation at the CpGs of the reference.

Written by ``methray prepare`` (:func:`methray.prepare.prepare`) into ``<out_dir>/cpg_table``;
not to be confused with the reference's CpG catalogue (:mod:`methray.cpgs`, every CpG of a
genome, no measurements). One row per (tissue, CpG): ``chrom`` (hive partition), ``pos``
(int64, 0-based C on the + strand), ``n_meth``, ``n_total`` (float64; NaN when the format has
no counts), ``beta`` (float64, 0..1), ``tissue`` (str), ``in_cpg_island`` (bool), ``split``
(str: train / val / test / gap).

Here: :class:`SiteCaller` (measured C's -> CpGs of the reference, strands merged, streamed
contig by contig) and :func:`call_sites` (the same in one table), the writers
:func:`write_sites` / :class:`SitesWriter` and the readers :func:`read_sites` (pandas) and :func:`sites_dataset`
(Ray Data).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
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
SITE_COLUMNS = ["chrom", "pos", "n_meth", "n_total", "beta"]  # what call_sites / SiteCaller.contigs return
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


class SiteCaller:
    """Measured C's -> CpGs of the reference, streamed: memory bounded by a chunk and one contig.

    Two passes, as :func:`call_sites` describes:

    1. :meth:`add` checks each chunk of file rows against the reference and spills the rows
       that are CpG C's, grouped by contig, to a local temporary Arrow IPC file (one file per
       chunk, one record batch per contig); only counts stay in memory;
    2. :meth:`contigs` (after :meth:`finish`, which applies the non-CpG limit) reads one
       contig's rows back at a time, in reference order, checks duplicates and merges the
       strands of each CpG.

    The reference is read one contig at a time through its memory-mapped cache, and a contig's
    mapping is dropped when the next contig starts, so resident genome pages stay bounded by
    one contig too. Use as a context manager (removes the spill files).

    Parameters
    ----------
    ref
        The reference genome.
    source
        File name for error messages.
    max_non_cpg_fraction
        Fail above this fraction of rows that are not a CpG C.
    contig_map, match_contig_names, duplicates
        See :func:`call_sites`.
    spill_dir
        Parent directory of the temporary spill files (default: the system's temporary directory).
    """

    COLUMNS = ("pos", "strand", "n_meth", "n_total", "beta", "line")

    def __init__(self, ref: Reference, source: str, max_non_cpg_fraction: float, *, contig_map: dict | None = None,
                 match_contig_names: bool = True, duplicates: str = "error", spill_dir: str | None = None):
        self.ref, self.source, self.max_non_cpg_fraction, self.duplicates = ref, source, max_non_cpg_fraction, duplicates
        self.names = ContigNames(ref, contig_map, match_contig_names)
        self.rank = {c: i for i, c in enumerate(ref.chroms)}
        self.rows = self.past_end = self.c_or_g = self.kept = 0
        self.first_bad = None
        self.largest_piece = 0
        """Most rows held at once: the largest chunk added or contig merged (tests check the bound)."""
        self._dir = tempfile.mkdtemp(prefix="methray-sites-", dir=spill_dir)
        self._spilled: dict[int, list[tuple[str, int]]] = {}  # contig rank -> (spill file, batch index)
        self._files = 0
        self._codes = (None, None)  # (contig, padded codes): one contig mapped at a time
        self._cpgs = self._both = self._summed = 0

    def __enter__(self) -> "SiteCaller":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the spill files."""
        self._codes = (None, None)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _contig_codes(self, chrom: str) -> np.ndarray:
        if self._codes[0] != chrom:
            self._codes = (None, None)  # unmap the previous contig first
            self._codes = (chrom, np.load(self.ref.contig_path(chrom), mmap_mode="r").view(np.ndarray))
        return self._codes[1]

    def add(self, chunk: pd.DataFrame) -> None:
        """Check one chunk of rows (:data:`methray.io.methylation.COLUMNS`) and spill its CpG C's.

        Raises
        ------
        MethrayError
            Unknown or ambiguous contig name.
        """
        self.rows += len(chunk)
        self.largest_piece = max(self.largest_piece, len(chunk))
        codes_in, labels = pd.factorize(chunk["chrom"], sort=False)
        batches = []
        for k, label in enumerate(labels):
            idx = np.flatnonzero(codes_in == k)
            lines = chunk["line"].to_numpy()[idx]
            chrom = self.names(str(label), f"{self.source}:{lines[0]}")
            pos = chunk["pos"].to_numpy()[idx]
            stated = chunk["strand"].to_numpy()[idx] if "strand" in chunk else np.zeros(idx.size, np.int8)
            inside = (pos >= 0) & (pos < self.ref.sizes[chrom])
            self.past_end += int((~inside).sum())
            codes = self._contig_codes(chrom)
            p = np.where(inside, pos, 0) + MAX_FLANK
            at, nxt, prev = codes[p], codes[p + 1], codes[p - 1]
            plus = inside & (stated >= 0) & (at == _C) & (nxt == _G)
            minus = inside & (stated <= 0) & (at == _G) & (prev == _C)
            ok = plus | minus
            if not ok.all():
                i = int(np.argmin(ok))
                if self.first_bad is None or lines[i] < self.first_bad[0]:
                    self.first_bad = (int(lines[i]), chrom, int(pos[i]))
                self.c_or_g += int((inside & ~ok & ((at == _C) | (at == _G))).sum())
            sel = np.flatnonzero(ok)
            if not sel.size:
                continue
            self.kept += sel.size
            cols = {
                "pos": np.where(plus[sel], pos[sel], pos[sel] - 1).astype(np.int64),
                "strand": np.where(plus[sel], 1, -1).astype(np.int8),
                **{c: chunk[c].to_numpy(np.float64)[idx][sel] for c in ("n_meth", "n_total", "beta")},
                "line": lines[sel].astype(np.int64),
            }
            batches.append((self.rank[chrom], pa.record_batch(cols)))
        if batches:
            path = os.path.join(self._dir, f"{self._files:06d}.arrow")
            self._files += 1
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, batches[0][1].schema) as writer:
                for i, (rank, batch) in enumerate(batches):
                    writer.write_batch(batch)
                    self._spilled.setdefault(rank, []).append((path, i))

    def finish(self) -> None:
        """Apply the non-CpG limit once every chunk is added.

        Raises
        ------
        MethrayError
            More than ``max_non_cpg_fraction`` of the rows are not a CpG C of the reference.
        """
        self._codes = (None, None)
        rows, non_cpg = self.rows, self.rows - self.kept
        if rows and non_cpg / rows > self.max_non_cpg_fraction:
            line, chrom, pos = self.first_bad
            hint = "wrong assembly or coordinate base (0- vs 1-based)?"
            inside = non_cpg - self.past_end
            if inside and self.c_or_g / inside >= 0.9:
                hint = (f"{100 * self.c_or_g / inside:.0f}% of them are C/G of the reference outside a CpG: non-CpG calls (CHG/CHH) "
                        f"in a format without a context column? Keep only CpG calls; else wrong assembly or coordinate base (0- vs 1-based)?")
            raise MethrayError(
                f"{self.source}: {non_cpg} of {rows} sites "
                f"({100 * non_cpg / rows:.1f}%, limit {100 * self.max_non_cpg_fraction:g}%) are not CpGs "
                f"in {self.ref.path} ({self.past_end} past a contig end; first at line {line}: {chrom}:{pos} 0-based); {hint}"
            )

    def _read_contig(self, rank: int) -> pd.DataFrame:
        batches = []
        for path, i in self._spilled[rank]:
            # Not closed explicitly: the batch keeps the mapping alive until it is copied below.
            batches.append(pa.ipc.open_file(pa.memory_map(path)).get_batch(i))
        return pa.Table.from_batches(batches).to_pandas()

    def contigs(self) -> Iterator[pd.DataFrame]:
        """The CpGs of each contig with data, one contig at a time, in reference order.

        Yields
        ------
        pd.DataFrame
            One contig's CpGs as :func:`call_sites` returns them.

        Raises
        ------
        MethrayError
            The same site and strand twice (with ``duplicates="error"``).
        """
        for rank in sorted(self._spilled):
            df = self._read_contig(rank)
            self.largest_piece = max(self.largest_piece, len(df))
            merged, both, summed = _merge_strands(df, self.ref.chroms[rank], self.source, self.duplicates)
            self._cpgs += len(merged)
            self._both += both
            self._summed += summed
            yield merged

    @property
    def counts(self) -> CallCounts:
        """What was read, dropped and merged (CpG counts complete once :meth:`contigs` is exhausted)."""
        return CallCounts(self.rows, self.rows - self.kept, self._cpgs, self._both, self.past_end, self._summed, dict(self.names.renamed))


def _merge_strands(df: pd.DataFrame, chrom: str, source: str, duplicates: str) -> tuple[pd.DataFrame, int, int]:
    """One contig's checked rows -> one row per CpG (strands merged); (table, CpGs with both strands, rows summed)."""
    df = df.sort_values(["pos", "strand", "line"], kind="stable", ignore_index=True)
    ps, sd = df["pos"].to_numpy(), df["strand"].to_numpy()
    dup = np.zeros(len(df), dtype=bool)
    dup[1:] = (ps[1:] == ps[:-1]) & (sd[1:] == sd[:-1])
    if dup.any() and duplicates != "sum":
        i = int(np.argmax(dup))
        r = df.iloc[i]
        strand = "+" if r["strand"] > 0 else "-"
        raise MethrayError(
            f"{source}:{int(r['line'])}: expected one row per site and strand; line {int(df['line'].iloc[i - 1])} has the same "
            f"{strand} strand C of the CpG at {chrom}:{int(r['pos'])} (0-based); "
            f"set duplicates: sum for this tissue to add their counts"
        )
    grouped = df.groupby("pos", sort=True)
    strands = grouped["strand"].nunique()
    merged = grouped.agg(n_meth=("n_meth", "sum"), n_total=("n_total", "sum"), beta_mean=("beta", "mean")).reset_index()
    has_counts = grouped["n_total"].count().to_numpy() > 0
    merged.loc[~has_counts, ["n_meth", "n_total"]] = np.nan
    merged["beta"] = np.where(has_counts, merged["n_meth"] / merged["n_total"].where(merged["n_total"] > 0), merged["beta_mean"])
    merged["chrom"] = np.full(len(merged), chrom, dtype=object)
    return merged[SITE_COLUMNS], int((strands.to_numpy() > 1).sum()), int(dup.sum())


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
    """Check measured C's against the reference and merge the strands of each CpG, in one table.

    A row is the + strand C of a CpG when the reference has C at ``pos`` and G at ``pos + 1``,
    the - strand C when it has G at ``pos`` and C at ``pos - 1`` (a strand stated by the file
    must agree). Anything else, including a position past the contig end, is *not a CpG*:
    counted and dropped, and more than ``max_non_cpg_fraction`` of them fails the run. The
    same site on the same strand twice is an error naming both lines, or with
    ``duplicates="sum"`` their counts are added (counted). The whole result is returned at
    once (for files of one chromosome or a few); :class:`SiteCaller` streams it contig by
    contig, which is what :func:`methray.prepare.prepare` does.

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
    with SiteCaller(ref, source, max_non_cpg_fraction, contig_map=contig_map, match_contig_names=match_contig_names,
                    duplicates=duplicates) as caller:
        for chunk in chunks:
            caller.add(chunk)
        caller.finish()
        parts = list(caller.contigs())
        counts = caller.counts
    if not parts:
        empty = pd.DataFrame({"chrom": pd.Series([], dtype=object), "pos": pd.Series([], dtype=np.int64),
                              **{c: pd.Series([], dtype=np.float64) for c in ("n_meth", "n_total", "beta")}})
        return empty, counts
    return pd.concat(parts, ignore_index=True), counts


class SitesWriter:
    """Write the sites table contig by contig: Parquet partitioned by ``chrom`` (hive), atomically.

    Each :meth:`write` adds the rows of one or more contigs (a contig is written once: its
    files are named ``part-0.parquet``, ``part-1.parquet``, ... in its partition directory),
    ``rows_per_file`` rows per file so that Ray Data reads in parallel. Locally the table is
    written into a temporary sibling directory and renamed to ``out`` when the ``with`` block
    ends without an error (an existing table is replaced); on an error nothing appears. On
    ``s3://`` an existing table is removed first and files are written in place.
    """

    def __init__(self, out: str, rows_per_file: int):
        self.out = out
        self.kwargs = dict(
            format="parquet",
            partitioning=pads.partitioning(pa.schema([("chrom", pa.string())]), flavor="hive"),
            max_rows_per_file=rows_per_file,
            max_rows_per_group=min(rows_per_file, 1 << 20),
            existing_data_behavior="overwrite_or_ignore",
            preserve_order=True,  # else the writer's threads may put rows out of (pos, tissue) order
        )
        self.work = None
        if storage.is_remote(out):
            fs, path = storage.filesystem(out)
            if fs.exists(path):
                fs.rm(path, recursive=True)
            self.filesystem, self.path = storage.arrow_location(out)
        else:
            self.work = storage.staging_dir(os.path.abspath(out))
            self.filesystem, self.path = None, self.work

    def __enter__(self) -> "SitesWriter":
        return self

    def write(self, table: pd.DataFrame) -> None:
        """Add rows (the table's columns, ``chrom`` first), sorted as they should be read."""
        data = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
        pads.write_dataset(data, self.path, filesystem=self.filesystem, **self.kwargs)

    def __exit__(self, exc_type, *exc) -> None:
        if self.work is None:
            return
        try:
            if exc_type is None:
                storage.replace_dir(self.work, self.out)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


def write_sites(table: pd.DataFrame, out: str, rows_per_file: int) -> None:
    """Write a whole sites table at once (see :class:`SitesWriter`)."""
    with SitesWriter(out, rows_per_file) as writer:
        writer.write(table)


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
