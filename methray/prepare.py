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

The table (``<out_dir>/cpg_table``) has one row per (tissue, CpG): ``chrom`` (hive partition),
``pos`` (int64, 0-based C on the + strand), ``n_meth``, ``n_total`` (float64; NaN when the
format has no counts), ``beta`` (float64, 0..1), ``tissue`` (str), ``in_cpg_island`` (bool),
``split`` (str: train / val / test / gap). It is written under a temporary name and
renamed when complete.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

import pandas as pd

from . import split as splitting
from . import storage
from .config import RunConfig
from .errors import MethrayError
from .genome import open_reference
from .io.bed import load_islands
from .io.methylation import MethylationReader, ReadOptions
from .sites import call_sites, write_sites

log = logging.getLogger(__name__)


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


def read_tissue(tissue, ref, max_non_cpg_fraction: float) -> tuple[pd.DataFrame, TissueCounts]:
    """Stream one tissue's file through its reader and :func:`methray.sites.call_sites`.

    Returns
    -------
    (pd.DataFrame, TissueCounts)
        The measured CpGs (see :func:`methray.sites.call_sites`) and the counts of everything
        read and dropped.

    Raises
    ------
    MethrayError
        See :class:`methray.io.methylation.MethylationReader` and :func:`methray.sites.call_sites`.
    """
    reader = MethylationReader(tissue.path, tissue.format, ReadOptions(tissue.value_scale, tissue.modkit_5hmc))
    sites, called = call_sites(
        reader.chunks(), ref, tissue.path, max_non_cpg_fraction,
        contig_map=tissue.contig_map, match_contig_names=tissue.match_contig_names, duplicates=tissue.duplicates,
    )
    st = reader.stats
    counts = TissueCounts(tissue.name, tissue.path, format=reader.format, format_detected=st.detected, **asdict(called))
    counts.rows_read = st.rows  # every data row, before the context / modification / coverage drops
    counts.other_context_dropped, counts.other_modification_dropped = st.other_context, st.other_modification
    counts.zero_coverage_dropped = st.zero_coverage
    return sites, counts


def prepare_tissue(tissue, reference: str, cpg_islands: str | None, settings) -> tuple[pd.DataFrame, TissueCounts]:
    """Read, check, merge, filter and flag one tissue's methylation file.

    Runs in the driver for one tissue, as a Ray task per tissue for several.

    Parameters
    ----------
    tissue
        The tissue's :class:`methray.config.TissueConfig` (path, format and reading options).
    reference, cpg_islands
        FASTA and CpG-island BED paths.
    settings
        The run's :class:`methray.config.PrepareConfig`.

    Returns
    -------
    (pd.DataFrame, TissueCounts)
        ``chrom, pos, n_meth, n_total, beta, tissue, in_cpg_island`` of the kept CpGs, and the
        counts of what was read, dropped and kept.
    """
    ref = open_reference(reference)
    islands = load_islands(cpg_islands)
    cpgs, counts = read_tissue(tissue, ref, settings.max_non_cpg_fraction)
    known = cpgs["n_total"].notna()
    low = known & (cpgs["n_total"] < settings.min_coverage)
    counts.coverage_unknown = int((~known).sum())
    counts.low_coverage_dropped = int(low.sum())
    cpgs = cpgs[~low].copy()
    cpgs["tissue"] = tissue.name
    cpgs["in_cpg_island"] = islands.flag(cpgs["chrom"].to_numpy(), cpgs["pos"].to_numpy())
    counts.kept = len(cpgs)
    counts.in_cpg_island = int(cpgs["in_cpg_island"].sum())
    return cpgs, counts


def prepare(cfg: RunConfig) -> list[TissueCounts]:
    """Run the prepare stage for every tissue of ``cfg`` and write the CpG table.

    Writes the sites table ``<out_dir>/cpg_table/`` (:mod:`methray.sites`),
    ``<out_dir>/split_regions.tsv`` and ``<out_dir>/prepare_report.json``.

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
    if len(cfg.tissues) > 1:
        # Several files: one Ray task each, in parallel (each task maps the shared genome cache).
        import ray

        from .runtime import init_ray

        init_ray(cfg)
        task = ray.remote(num_cpus=1, max_retries=0)(prepare_tissue)
        try:
            done = ray.get([task.remote(t, cfg.reference, cfg.cpg_islands, cfg.prepare) for t in cfg.tissues])
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, MethrayError):  # an input problem: the one-line error, not a remote traceback
                raise exc.cause from None
            raise
    else:
        t = cfg.tissues[0]
        done = [prepare_tissue(t, cfg.reference, cfg.cpg_islands, cfg.prepare)]
    tables = [d[0] for d in done]
    reports = [d[1] for d in done]
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
    write_sites(table, cfg.sites_table, cfg.prepare.rows_per_file)
    with storage.atomic_write(cfg.path("split_regions.tsv")) as fh:
        regions.to_csv(fh, sep="\t", index=False)
    with storage.atomic_write(cfg.path("prepare_report.json")) as fh:
        json.dump([asdict(r) for r in reports], fh, indent=2)
    return reports
