"""Train / validation / test hold-out by chromosome or by contiguous region.

Neighbouring CpGs share most of their window (two CpGs 50 bp apart share 350 of MRCNN's
400 bp), so a random per-site split leaks the test set into training. methray never splits
by site:

- **chromosome hold-out**: whole chromosomes go to validation / test. Used when
  ``split.val_chroms`` / ``split.test_chroms`` are given, or automatically when the data
  covers three or more chromosomes (chromosomes drawn with ``split.seed`` until the
  fractions are reached).
- **contiguous blocks**: on one or two chromosomes, each chromosome's measured CpGs are cut
  into ``n_blocks`` blocks of equal site count; ``round(test_fraction * n_blocks)`` blocks go
  to test and ``round(val_fraction * n_blocks)`` to validation (drawn with ``split.seed``).

Then a **gap**: a training site closer than ``gap_bp`` to a validation or test region, and a
validation site closer than ``gap_bp`` to a test region, gets split ``gap`` and is not used
(counted in the prepare report). With ``gap_bp`` >= the window length, no training window
overlaps a held-out window.

Regions are genomic intervals (0-based half-open), so every tissue of a run shares them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import SplitConfig
from .errors import MethrayError
from .io.bed import IntervalIndex

SPLITS = ("train", "val", "test", "gap")


def plan_regions(sites: pd.DataFrame, chrom_order: list[str], sizes: dict[str, int], cfg: SplitConfig) -> pd.DataFrame:
    """Cut the genome into train / val / test regions.

    Parameters
    ----------
    sites
        Measured CpGs (all tissues): ``chrom``, ``pos`` (0-based).
    chrom_order
        Reference contig order.
    sizes
        Contig lengths (bp).
    cfg
        The ``split`` section.

    Returns
    -------
    pd.DataFrame
        ``chrom, start, end, split``: 0-based half-open regions covering every chromosome
        with data, in reference order.

    Raises
    ------
    MethrayError
        A held-out chromosome that has no data or is not in the reference; no training data left.
    """
    distinct = sites[["chrom", "pos"]].drop_duplicates()
    counts = distinct["chrom"].value_counts()
    return plan_regions_by_chrom({c: int(n) for c, n in counts.items()},
                                 lambda c: np.sort(distinct.loc[distinct["chrom"] == c, "pos"].to_numpy(np.int64)), chrom_order, sizes, cfg)


def plan_regions_by_chrom(counts: dict[str, int], positions, chrom_order: list[str], sizes: dict[str, int], cfg: SplitConfig) -> pd.DataFrame:
    """:func:`plan_regions` from per-chromosome figures, for callers that stream the sites.

    Parameters
    ----------
    counts
        Distinct measured CpGs (all tissues) per chromosome.
    positions
        ``positions(chrom)`` -> ``(n,) int64`` sorted distinct 0-based positions of one
        chromosome's measured CpGs; called (once per chromosome) only for the contiguous-block
        hold-out, which uses one or two chromosomes.
    chrom_order, sizes, cfg
        As in :func:`plan_regions`.
    """
    chroms = [c for c in chrom_order if counts.get(c, 0) > 0]
    for c in [*cfg.val_chroms, *cfg.test_chroms]:
        if c not in chroms:
            raise MethrayError(f"split: held-out chromosome {c!r} has no measured CpGs (have {', '.join(chroms)})")
    rng = np.random.default_rng(cfg.seed)
    rows = []
    if cfg.val_chroms or cfg.test_chroms or len(chroms) >= 3:
        test, val = list(cfg.test_chroms), list(cfg.val_chroms)
        if not (test or val):
            counts = pd.Series(counts, dtype=np.int64)
            order = [chroms[i] for i in rng.permutation(len(chroms))]
            total = counts.sum()
            for c in order:
                if counts[test].sum() < cfg.test_fraction * total:
                    test.append(c)
                elif counts[val].sum() < cfg.val_fraction * total:
                    val.append(c)
        for c in chroms:
            rows.append((c, 0, sizes[c], "test" if c in test else "val" if c in val else "train"))
    else:
        for c in chroms:
            pos = positions(c)
            n_test = max(1, round(cfg.test_fraction * cfg.n_blocks))
            n_val = round(cfg.val_fraction * cfg.n_blocks) if cfg.val_fraction > 0 else 0
            if n_test + n_val >= cfg.n_blocks or len(pos) < cfg.n_blocks:
                raise MethrayError(f"split: {c} has {len(pos)} sites; cannot hold out {n_test}+{n_val} of {cfg.n_blocks} blocks")
            # Block edges halfway between the last site of one block and the first of the next.
            cut = np.linspace(0, len(pos), cfg.n_blocks + 1).round().astype(int)[1:-1]
            edges = np.concatenate([[0], (pos[cut - 1] + pos[cut]) // 2 + 1, [sizes[c]]])
            labels = np.array(["train"] * cfg.n_blocks, dtype=object)
            held = rng.permutation(cfg.n_blocks)
            labels[held[:n_test]] = "test"
            labels[held[n_test : n_test + n_val]] = "val"
            rows += [(c, int(edges[i]), int(edges[i + 1]), labels[i]) for i in range(cfg.n_blocks)]
    regions = pd.DataFrame(rows, columns=["chrom", "start", "end", "split"])
    if not (regions["split"] == "train").any():
        raise MethrayError("split: no training region left; lower split.test_fraction / val_fraction")
    return regions


def assign(regions: pd.DataFrame, chroms: np.ndarray, positions: np.ndarray, gap_bp: int) -> np.ndarray:
    """Split label of each site: ``train``, ``val``, ``test`` or ``gap``.

    Parameters
    ----------
    regions
        From :func:`plan_regions`.
    chroms, positions
        ``(N,)`` chromosome names and 0-based positions.
    gap_bp
        Minimum distance (bp) kept between training and held-out sites, and between
        validation and test sites.

    Returns
    -------
    np.ndarray
        ``(N,) object`` labels.
    """
    chroms = np.asarray(chroms)
    positions = np.asarray(positions, dtype=np.int64)
    out = np.full(len(positions), "train", dtype=object)
    for label in ("val", "test"):
        sel = regions[regions["split"] == label]
        out[IntervalIndex(sel).flag(chroms, positions)] = label

    def near(label: str) -> np.ndarray:
        sel = regions[regions["split"] == label].copy()
        sel["start"] = (sel["start"] - gap_bp).clip(lower=0)
        sel["end"] = sel["end"] + gap_bp
        return IntervalIndex(sel).flag(chroms, positions)

    out[(out == "train") & (near("val") | near("test"))] = "gap"
    out[(out == "val") & near("test")] = "gap"
    return out
