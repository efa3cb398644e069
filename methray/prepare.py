"""Stage 1, prepare: methylation files -> the measured-sites table (:mod:`methray.sites`).

For each tissue:

1. stream the file in chunks through its format's reader (:mod:`methray.io.methylation`,
   format recognised from the content unless given): rows of another context (CHG/CHH),
   another modification than 5mC, or without reads are counted and dropped there;
2. map its contig names to the reference's (``22`` -> ``chr22``, ``MT`` -> ``chrM`` when
   unambiguous, or ``contig_map``; an unknown contig is an error naming file and line);
3. assign strands: a measured C followed by G is the + strand C of a CpG at ``pos``; a
   measured G-position C (reference G preceded by C) is the - strand C of the CpG at
   ``pos - 1``; a strand stated by the file must agree; anything else, a position past the
   contig end included, is *not a CpG* and is dropped and counted. More than
   ``prepare.max_non_cpg_fraction`` (default 1%) of such sites fails the run: the file is
   probably for another assembly or uses the other coordinate base (0- vs 1-based);
4. the same site and strand twice is an error naming both lines (or summed with
   ``duplicates: sum``); merge the two strands of each CpG (counts summed; for count-free
   bedGraphs, betas averaged);
5. coverage filter: keep CpGs with ``n_total >= prepare.min_coverage`` (default 5 reads);
   sites without counts (bedGraph) are kept and counted as "coverage unknown";
6. flag CpG-island membership from ``cpg_islands`` (BED);
7. assign the hold-out split (:mod:`methray.split`).

Steps 1-4 run chunk by chunk and then contig by contig (:class:`methray.sites.SiteCaller`),
5-7 contig by contig: memory is bounded by a chunk of the file plus one contig's rows, for
files of any size (:func:`prepare`).

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
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import split as splitting
from . import storage
from .config import RunConfig
from .errors import MethrayError
from .genome import open_reference
from .io.bed import load_islands
from .io.methylation import MethylationReader, ReadOptions
from .sites import SiteCaller, SitesWriter

log = logging.getLogger(__name__)

TISSUE_COLUMNS = ["chrom", "pos", "n_meth", "n_total", "beta", "tissue", "in_cpg_island"]  # one tissue's kept CpGs
PART_COLUMNS = ["pos", "n_meth", "n_total", "beta", "in_cpg_island"]  # a per-contig part (chrom and tissue implied)


@dataclass
class TissueCounts:
    """What happened to one tissue's rows (all counts are numbers of rows or CpGs)."""

    tissue: str
    file: str
    format: str = ""
    format_detected: bool = False  # recognised from the content (no format: in the config)
    rows_read: int = 0  # data rows of the file
    other_context_dropped: int = 0  # CHG / CHH calls
    other_modification_dropped: int = 0  # modkit rows for a modification other than 5mC
    zero_coverage_dropped: int = 0  # rows with no reads
    contigs_renamed: dict = field(default_factory=dict)  # file name -> reference name
    non_cpg_dropped: int = 0  # sites that are not a CpG of the reference (including past_contig_end)
    past_contig_end: int = 0
    duplicates_summed: int = 0  # rows added to an earlier row of the same site and strand
    cpgs: int = 0  # distinct CpGs after strand merging
    cpgs_both_strands: int = 0
    low_coverage_dropped: int = 0
    coverage_unknown: int = 0
    kept: int = 0
    in_cpg_island: int = 0
    split: dict = field(default_factory=dict)

    def reading_summary(self) -> str:
        """One line on how the file was read: format, rows, what was dropped and why."""
        how = "detected from the content" if self.format_detected else "from the config"
        renamed = "".join(f"; contig {a} read as {b}" for a, b in self.contigs_renamed.items())
        return (
            f"format {self.format} ({how}); read {self.rows_read:,} rows; dropped {self.other_context_dropped:,} "
            f"in another context (CHG/CHH), {self.other_modification_dropped:,} of another modification, "
            f"{self.zero_coverage_dropped:,} without coverage, {self.non_cpg_dropped:,} not CpG in reference "
            f"({self.past_contig_end:,} past a contig end); {self.duplicates_summed:,} duplicates summed{renamed}"
        )


def tissue_contigs(tissue, reference: str, cpg_islands: str | None, settings, counts: TissueCounts,
                   chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """Read, check, merge, filter and flag one tissue's file, yielding one contig at a time.

    The file is read ``chunk_rows`` rows at a time (default
    :data:`methray.io.text.CHUNK_ROWS`) through its format's reader and checked chunk by chunk
    (:class:`methray.sites.SiteCaller`); then each contig's CpGs are merged, filtered by
    coverage and flagged for CpG islands. Memory is bounded by a chunk plus one contig's rows,
    never the whole file.

    Parameters
    ----------
    tissue
        The tissue's :class:`methray.config.TissueConfig` (path, format and reading options).
    reference, cpg_islands
        FASTA and CpG-island BED paths.
    settings
        The run's :class:`methray.config.PrepareConfig`.
    counts
        Filled as the file is read; complete once the generator is exhausted.
    chunk_rows
        Rows per chunk read from the file.

    Yields
    ------
    pd.DataFrame
        One contig's kept CpGs, in reference order: ``chrom, pos, n_meth, n_total, beta, tissue,
        in_cpg_island`` (see the module docstring).

    Raises
    ------
    MethrayError
        See :class:`methray.io.methylation.MethylationReader` and :func:`methray.sites.call_sites`.
    """
    ref = open_reference(reference)
    islands = load_islands(cpg_islands)
    reader = MethylationReader(tissue.path, tissue.format, ReadOptions(tissue.value_scale, tissue.modkit_5hmc))
    counts.format, counts.format_detected = reader.format, reader.stats.detected
    with SiteCaller(ref, tissue.path, settings.max_non_cpg_fraction, contig_map=tissue.contig_map,
                    match_contig_names=tissue.match_contig_names, duplicates=tissue.duplicates) as caller:
        for chunk in reader.chunks(chunk_rows):
            caller.add(chunk)
        st = reader.stats
        counts.rows_read = st.rows  # every data row, before the context / modification / coverage drops
        counts.other_context_dropped, counts.other_modification_dropped = st.other_context, st.other_modification
        counts.zero_coverage_dropped = st.zero_coverage
        caller.finish()
        for cpgs in caller.contigs():
            known = cpgs["n_total"].notna()
            low = known & (cpgs["n_total"] < settings.min_coverage)
            counts.coverage_unknown += int((~known).sum())
            counts.low_coverage_dropped += int(low.sum())
            cpgs = cpgs[~low].copy()
            cpgs["tissue"] = tissue.name
            cpgs["in_cpg_island"] = islands.contains(cpgs["chrom"].iloc[0], cpgs["pos"].to_numpy()) if len(cpgs) else False
            counts.kept += len(cpgs)
            counts.in_cpg_island += int(cpgs["in_cpg_island"].sum())
            yield cpgs
        called = caller.counts
    counts.non_cpg_dropped, counts.past_contig_end = called.non_cpg_dropped, called.past_contig_end
    counts.duplicates_summed, counts.cpgs, counts.cpgs_both_strands = called.duplicates_summed, called.cpgs, called.cpgs_both_strands
    counts.contigs_renamed = dict(called.contigs_renamed)


def prepare_tissue(tissue, reference: str, cpg_islands: str | None, settings, chunk_rows: int | None = None) -> tuple[pd.DataFrame, TissueCounts]:
    """One tissue's kept CpGs in one table (for small files and tests; :func:`prepare` streams).

    Returns
    -------
    (pd.DataFrame, TissueCounts)
        ``chrom, pos, n_meth, n_total, beta, tissue, in_cpg_island`` of the kept CpGs (see
        :func:`tissue_contigs`), and the counts of what was read, dropped and kept.
    """
    counts = TissueCounts(tissue.name, tissue.path)
    parts = list(tissue_contigs(tissue, reference, cpg_islands, settings, counts, chunk_rows))
    if not parts:
        return pd.DataFrame({c: [] for c in TISSUE_COLUMNS}), counts
    return pd.concat(parts, ignore_index=True), counts


def _part_path(parts: str, index: int, chrom: str) -> str:
    return storage.join(parts, str(index), f"{quote(chrom, safe='')}.parquet")


def write_tissue_parts(index: int, tissue, reference: str, cpg_islands: str | None, settings, parts: str,
                       chunk_rows: int | None = None) -> tuple[TissueCounts, dict[str, int]]:
    """Prepare one tissue (:func:`tissue_contigs`) into one Parquet file per contig under ``parts``.

    Runs in the driver for one tissue, as a Ray task per tissue for several.

    Parameters
    ----------
    index
        The tissue's position in the run (the folder ``<parts>/<index>/``).
    parts
        Folder (local or ``s3://``) for the per-contig files ``<index>/<contig>.parquet``
        (``pos, n_meth, n_total, beta, in_cpg_island``), read back by :func:`prepare`.

    Returns
    -------
    (TissueCounts, dict)
        The counts, and the kept CpGs per contig (contigs with data, reference order).
    """
    counts = TissueCounts(tissue.name, tissue.path)
    rows = {}
    for cpgs in tissue_contigs(tissue, reference, cpg_islands, settings, counts, chunk_rows):
        if cpgs.empty:
            continue
        chrom = cpgs["chrom"].iloc[0]
        path = _part_path(parts, index, chrom)
        if not storage.is_remote(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fs, inner = storage.arrow_location(path)  # (None, path) locally
        pq.write_table(pa.Table.from_pandas(cpgs[PART_COLUMNS], preserve_index=False), inner, filesystem=fs)
        rows[chrom] = len(cpgs)
    return counts, rows


def _read_part(parts: str, index: int, chrom: str, columns: list[str] | None = None) -> pd.DataFrame:
    fs, path = storage.arrow_location(_part_path(parts, index, chrom))
    return pq.read_table(path, filesystem=fs, columns=columns).to_pandas()


def prepare(cfg: RunConfig, chunk_rows: int | None = None, check_regions=None) -> list[TissueCounts]:
    """Run the prepare stage for every tissue of ``cfg`` and write the CpG table.

    Each tissue's file is streamed into per-contig parts (:func:`write_tissue_parts`; one Ray
    task per tissue when there are several); the hold-out regions are planned from per-contig
    counts; then the table is written contig by contig (all tissues of a contig sorted by
    ``pos, tissue``, split labels assigned). No process holds more than a chunk of a file and
    one contig's rows (of every tissue). Writes the sites table ``<out_dir>/cpg_table/``
    (:mod:`methray.sites`), ``<out_dir>/split_regions.tsv`` and ``<out_dir>/prepare_report.json``.

    Parameters
    ----------
    cfg
        The run's configuration.
    chunk_rows
        Rows per chunk read from each file (default :data:`methray.io.text.CHUNK_ROWS`).
    check_regions
        ``check_regions(regions)``, called with the planned hold-out regions (``chrom, start,
        end, split``) before anything is written; it raises :class:`MethrayError` to stop
        (e.g. ``methray compare --init-from`` requires the regions of an earlier run).

    Returns
    -------
    list[TissueCounts]
        Counts of everything read, dropped, merged, filtered and kept, per tissue.

    Raises
    ------
    MethrayError
        Any input problem (see :func:`methray.sites.call_sites` and the readers); nothing is
        written then.
    """
    ref = open_reference(cfg.reference)
    parts = cfg.path(f"._prepare-parts-{uuid.uuid4().hex[:8]}")
    try:
        if len(cfg.tissues) > 1:
            # Several files: one Ray task each, in parallel (each task maps the shared genome cache).
            import ray

            from .runtime import init_ray

            init_ray(cfg)
            task = ray.remote(num_cpus=1, max_retries=0)(write_tissue_parts)
            refs = [task.remote(i, t, cfg.reference, cfg.cpg_islands, cfg.prepare, parts, chunk_rows) for i, t in enumerate(cfg.tissues)]
            try:
                done = ray.get(refs)
            except ray.exceptions.RayTaskError as exc:
                for ref in refs:  # stop the other files' tasks before their parts are removed
                    ray.cancel(ref, force=True)
                ray.wait(refs, num_returns=len(refs), timeout=60)
                if isinstance(exc.cause, MethrayError):  # an input problem: the one-line error, not a remote traceback
                    raise exc.cause from None
                raise
        else:
            done = [write_tissue_parts(0, cfg.tissues[0], cfg.reference, cfg.cpg_islands, cfg.prepare, parts, chunk_rows)]
        reports = [d[0] for d in done]
        rows = [d[1] for d in done]
        chroms = [c for c in ref.chroms if any(c in r for r in rows)]
        if not chroms:
            raise MethrayError("prepare: no CpG passed the filters; nothing to train on")

        def positions(chrom: str) -> np.ndarray:  # distinct positions of one contig over every tissue, sorted
            pos = [_read_part(parts, i, chrom, ["pos"])["pos"].to_numpy(np.int64) for i, r in enumerate(rows) if chrom in r]
            return pos[0] if len(pos) == 1 else np.unique(np.concatenate(pos))

        distinct = {c: rows[0][c] for c in chroms} if len(rows) == 1 else {c: len(positions(c)) for c in chroms}
        regions = splitting.plan_regions_by_chrom(distinct, positions, ref.chroms, ref.sizes, cfg.split)
        if check_regions is not None:
            check_regions(regions)
        for counts in reports:
            counts.split = dict.fromkeys(splitting.SPLITS, 0)
        with SitesWriter(cfg.sites_table, cfg.prepare.rows_per_file) as writer:
            for chrom in chroms:
                frames = []
                for i, (counts, r) in enumerate(zip(reports, rows)):
                    if chrom in r:
                        part = _read_part(parts, i, chrom)
                        part.insert(0, "chrom", chrom)
                        part.insert(5, "tissue", counts.tissue)
                        frames.append(part)
                table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
                table["split"] = splitting.assign(regions, table["chrom"].to_numpy(), table["pos"].to_numpy(), cfg.split.gap_bp)
                for counts in reports:
                    labels = table.loc[table["tissue"] == counts.tissue, "split"]
                    for s in splitting.SPLITS:
                        counts.split[s] += int((labels == s).sum())
                table = table.sort_values(["pos", "tissue"], kind="stable")
                writer.write(table)
    finally:
        _remove(parts)
    with storage.atomic_write(cfg.path("split_regions.tsv")) as fh:
        regions.to_csv(fh, sep="\t", index=False)
    with storage.atomic_write(cfg.path("prepare_report.json")) as fh:
        json.dump([asdict(r) for r in reports], fh, indent=2)
    return reports


def _remove(path: str) -> None:
    fs, p = storage.filesystem(path)
    if fs.exists(p):
        fs.rm(p, recursive=True)
