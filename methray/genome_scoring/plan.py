"""What a genome-wide job scores: the reference's CpG catalogue, cut into shards, with the
number of CpGs (and excluded CpGs) of each shard."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import storage
from ..cpgs import enumerate_cpgs, load_summary, read_cpgs
from ..errors import MethrayError
from ..genome import Reference
from ..shards import Shard, plan_shards
from .config import TissueSetConfig

log = logging.getLogger(__name__)


@dataclass
class ShardCounts:
    """CpGs of one shard: all, excluded (mostly-N window, not scored), scored."""

    cpgs: int = 0
    excluded: int = 0

    @property
    def scored(self) -> int:
        return self.cpgs - self.excluded


def plan(cfg: TissueSetConfig, ref: Reference) -> list[Shard]:
    """The shard plan: ``chroms`` (default all) cut into ``shard_bp``, clipped to ``regions``.

    Returns
    -------
    list[Shard]
        In reference order then start, ``index`` 0..n-1.

    Raises
    ------
    MethrayError
        Unknown contig, or a region past a contig end.
    """
    regions = cfg.parsed_regions()
    chroms = cfg.chroms
    if regions:
        for c, _, e in regions:
            ref.check_chrom(c, source="regions")
            if e > ref.sizes[c]:
                raise MethrayError(f"regions: {c}:{e} is past the end of {c} ({ref.sizes[c]} bp)")
        chroms = sorted({c for c, _, _ in regions}, key=ref.chroms.index)
    shards = plan_shards(ref, cfg.shard_bp, chroms)
    if not regions:
        return shards
    clipped = []
    for s in shards:
        for c, a, b in regions:
            lo, hi = max(s.start, a), min(s.end, b)
            if c == s.chrom and lo < hi:
                clipped.append(Shard(s.chrom, lo, hi, len(clipped)))
    return clipped


def shard_counts(table: str, shards: list[Shard]) -> list[ShardCounts]:
    """CpGs and excluded CpGs in each shard (C position in ``[start, end)``)."""
    out = []
    by_chrom: dict[str, pd.DataFrame] = {}
    known = set(load_summary(table).per_chrom)
    for s in shards:
        if s.chrom not in by_chrom:
            by_chrom.clear()  # one contig in memory at a time
            by_chrom[s.chrom] = (
                read_cpgs(table, s.chrom, ["pos", "excluded"]) if s.chrom in known else pd.DataFrame({"pos": [], "excluded": []})
            )
        df = by_chrom[s.chrom]
        pos = df["pos"].to_numpy(np.int64)
        lo, hi = np.searchsorted(pos, [s.start, s.end])
        out.append(ShardCounts(int(hi - lo), int(df["excluded"].to_numpy(bool)[lo:hi].sum())))
    return out


def cpg_table_for(cfg: TissueSetConfig, prefix: str, ref: Reference) -> str:
    """The configured CpG table, or ``<prefix>/cpgs`` (enumerated on first use)."""
    if cfg.cpg_table:
        load_summary(cfg.cpg_table)  # complete?
        return cfg.cpg_table
    table = storage.join(prefix, "cpgs")
    if not storage.exists(storage.join(table, "_summary.json")):
        chroms = sorted({c for c, _, _ in cfg.parsed_regions()}, key=ref.chroms.index) if cfg.regions else cfg.chroms
        s = enumerate_cpgs(ref, table, cpg_islands=cfg.cpg_islands, max_n_fraction=cfg.max_n_fraction, chroms=chroms, overwrite=True)
        log.info(f"cpgs: {s.total:,} CpGs ({s.in_islands:,} in CpG islands, {s.excluded:,} excluded) -> {table} ({s.seconds:.1f} s)")
    return table


