"""95% intervals of held-out metrics from a bootstrap over hold-out blocks, not sites.

Neighbouring CpGs are not independent (they share most of their sequence window and lie in
the same methylation domain), so resampling single sites gives intervals that are far too
narrow. Here the unit of resampling is a block of the hold-out: each held-out region of
``split_regions.tsv`` (0-based half-open) is cut into consecutive blocks of ``block_bp``
(the last one shorter), and each bootstrap replicate draws as many blocks as there are, with
replacement, keeping all sites of a drawn block (the block bootstrap, Kunsch 1989, Ann Stat
17:1217). The interval is the percentile interval of the replicates (Efron & Tibshirani
1993, ch. 13).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from . import storage
from .metrics import CUTOFF, auprc_unmethylated

BLOCK_BP = 250_000
"""Default block length (bp): large against the site-to-site correlation of methylation
(a few kb), small enough that a demo hold-out (two regions of ~1.4 Mb) has ~12 blocks."""
METRICS = ("auroc", "auprc_unmeth", "rmse")


def read_split_regions(path: str) -> pd.DataFrame:
    """``split_regions.tsv`` of a run: ``chrom, start, end, split`` (0-based half-open)."""
    fs, p = storage.filesystem(path)
    with fs.open(p, "r") as fh:
        return pd.read_csv(fh, sep="\t", dtype={"chrom": str})


def hold_out_blocks(chroms: np.ndarray, positions: np.ndarray, regions: pd.DataFrame, split: str = "test", block_bp: int = BLOCK_BP) -> np.ndarray:
    """The hold-out block of each site.

    Parameters
    ----------
    chroms, positions
        ``(N,)`` chromosome names and 0-based positions of the sites.
    regions
        ``chrom, start, end, split`` (from :func:`read_split_regions`).
    split
        Which regions are the hold-out (``test`` or ``val``).
    block_bp
        Block length; each region is cut into ``ceil(length / block_bp)`` blocks.

    Returns
    -------
    np.ndarray
        ``(N,) int64`` block ids (0, 1, ... over the regions in file order); -1 for a site
        outside every ``split`` region.
    """
    chroms = np.asarray(chroms).astype(str)
    pos = np.asarray(positions, dtype=np.int64)
    out = np.full(len(pos), -1, dtype=np.int64)
    first = 0
    for r in regions[regions["split"] == split].itertuples():
        inside = (chroms == str(r.chrom)) & (pos >= r.start) & (pos < r.end)
        out[inside] = first + (pos[inside] - r.start) // block_bp
        first += -(-(int(r.end) - int(r.start)) // block_bp)
    return out


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    truth = y > CUTOFF
    both = truth.any() and (~truth).any()
    return {
        "auroc": float(skm.roc_auc_score(truth, p)) if both else np.nan,
        "auprc_unmeth": auprc_unmethylated(y, p),
        "rmse": float(np.sqrt(np.mean((y - p) ** 2))) if len(y) else np.nan,
    }


def block_bootstrap(y: np.ndarray, p: np.ndarray, blocks: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """AUROC, AUPRC (unmethylated class) and RMSE with a block-bootstrap interval.

    Parameters
    ----------
    y, p
        ``(N,)`` measured and predicted beta.
    blocks
        ``(N,)`` integer block id of each site (:func:`hold_out_blocks`); sites with -1 are
        left out. Blocks without sites do not count.
    n_boot
        Bootstrap replicates.
    seed
        Seed of the block draws (same seed, same interval).
    level
        Coverage of the percentile interval.

    Returns
    -------
    pd.DataFrame
        One row per metric of :data:`METRICS`: ``metric``, ``estimate`` (on all sites),
        ``lo``, ``hi`` (percentile interval; replicates where a metric is undefined are
        skipped), ``n_blocks``, ``n``.
    """
    y, p, blocks = (np.asarray(a) for a in (y, p, blocks))
    keep = blocks >= 0
    y, p, blocks = y[keep].astype(np.float64), p[keep].astype(np.float64), blocks[keep]
    ids, members = np.unique(blocks, return_inverse=True)
    order = np.argsort(members, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(members, minlength=len(ids)))])
    rng = np.random.default_rng(seed)
    reps = {m: [] for m in METRICS}
    for _ in range(n_boot):
        drawn = rng.integers(0, len(ids), len(ids))
        idx = np.concatenate([order[bounds[b] : bounds[b + 1]] for b in drawn]) if len(ids) else np.zeros(0, np.int64)
        for m, v in _metrics(y[idx], p[idx]).items():
            reps[m].append(v)
    est = _metrics(y, p)
    alpha = (1 - level) / 2
    rows = []
    for m in METRICS:
        r = np.asarray(reps[m])
        r = r[~np.isnan(r)]
        lo, hi = (np.quantile(r, [alpha, 1 - alpha]) if len(r) else (np.nan, np.nan))
        rows.append({"metric": m, "estimate": est[m], "lo": float(lo), "hi": float(hi), "n_blocks": len(ids), "n": int(len(y))})
    return pd.DataFrame(rows)


def interval_rows(pred: pd.DataFrame, regions: pd.DataFrame, model: str, tissue: str, *, split: str = "test", block_bp: int = BLOCK_BP, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """:func:`block_bootstrap` of a prediction table (``chrom, pos, beta, beta_pred``) over the
    blocks of its ``split`` regions, with ``model`` and ``tissue`` columns first."""
    blocks = hold_out_blocks(pred["chrom"].to_numpy(), pred["pos"].to_numpy(), regions, split, block_bp)
    out = block_bootstrap(pred["beta"].to_numpy(), pred["beta_pred"].to_numpy(), blocks, n_boot=n_boot, seed=seed)
    return pd.concat([pd.DataFrame({"model": model, "tissue": tissue}, index=out.index), out], axis=1)


def describe(block_bp: int = BLOCK_BP, n_boot: int = 1000) -> str:
    """The line that states how intervals were obtained (header of interval tables)."""
    return f"95% percentile intervals from {n_boot} bootstrap replicates over hold-out blocks of {block_bp:,} bp (sites resampled by whole block)"
