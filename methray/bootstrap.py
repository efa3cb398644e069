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
SEED_METRICS = (*METRICS, "mae", "pearson_r")
"""Metrics with an interval in ``methray compare`` (mean over seeds)."""


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


def _metrics(y: np.ndarray, p: np.ndarray, metrics=METRICS) -> dict[str, float]:
    """``metrics`` of measured ``y`` ``(N,)`` and predicted ``p`` ``(N,)``; with ``p`` of
    shape ``(S, N)`` (one row per seed), the mean over the rows of each row's metric."""
    if p.ndim == 2:
        per_seed = [_metrics(y, row, metrics) for row in p]
        return {m: float(np.mean([r[m] for r in per_seed])) for m in metrics}
    truth = y > CUTOFF
    both = truth.any() and (~truth).any()
    calc = {
        "auroc": lambda: float(skm.roc_auc_score(truth, p)) if both else np.nan,
        "auprc_unmeth": lambda: auprc_unmethylated(y, p),
        "rmse": lambda: float(np.sqrt(np.mean((y - p) ** 2))) if len(y) else np.nan,
        "mae": lambda: float(np.mean(np.abs(y - p))) if len(y) else np.nan,
        "pearson_r": lambda: float(np.corrcoef(y, p)[0, 1]) if len(y) > 1 and y.std() > 0 and p.std() > 0 else np.nan,
    }
    return {m: calc[m]() for m in metrics}


class _Ranked:
    """One run's predictions sorted once, so that each replicate's AUROC and AUPRC are
    weighted sums in O(N) instead of a new sort.

    A replicate that draws block ``b`` ``k`` times is the same as weighting its sites by
    ``k``; with those integer weights the formulas below equal scikit-learn's
    ``roc_auc_score`` and ``average_precision_score`` on the resampled sites (ties between
    equal scores grouped as scikit-learn does; tested against it).
    """

    def __init__(self, y: np.ndarray, p: np.ndarray):
        self.y, self.p = y, p
        self.auc = self._sorted(p, y > CUTOFF)  # AUROC: methylated sites, score p
        self.ap = self._sorted(1.0 - p, y <= CUTOFF)  # AUPRC: unmethylated sites, score 1 - p

    @staticmethod
    def _sorted(score: np.ndarray, positive: np.ndarray):
        order = np.argsort(-score, kind="mergesort")  # decreasing score
        s = score[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, np.int64)
        return order, starts, positive[order].astype(np.float64)

    def metrics(self, w: np.ndarray, metrics) -> dict[str, float]:
        """``metrics`` with site weights ``w`` ``(N,)`` (counts of the sites' blocks)."""
        out = {}
        n = w.sum()
        if n == 0:
            return {m: np.nan for m in metrics}
        y, p = self.y, self.p
        if "auroc" in metrics:
            order, starts, pos = self.auc
            ws = w[order]
            tp, fp = np.add.reduceat(ws * pos, starts), np.add.reduceat(ws * (1 - pos), starts)
            n_pos, n_neg = tp.sum(), fp.sum()
            above = np.cumsum(tp) - tp  # positives with a higher score than the group
            out["auroc"] = float(np.sum(fp * (above + tp / 2)) / (n_pos * n_neg)) if n_pos > 0 and n_neg > 0 else np.nan
        if "auprc_unmeth" in metrics:
            order, starts, pos = self.ap
            ws = w[order]
            tp, fp = np.cumsum(np.add.reduceat(ws * pos, starts)), np.cumsum(np.add.reduceat(ws * (1 - pos), starts))
            n_pos, n_neg = tp[-1], fp[-1]
            if n_pos > 0 and n_neg > 0:
                precision, recall = tp / np.maximum(tp + fp, 1e-300), tp / n_pos
                out["auprc_unmeth"] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
            else:
                out["auprc_unmeth"] = np.nan
        err = y - p
        if "rmse" in metrics:
            out["rmse"] = float(np.sqrt(np.dot(w, err * err) / n))
        if "mae" in metrics:
            out["mae"] = float(np.dot(w, np.abs(err)) / n)
        if "pearson_r" in metrics:
            my, mp = np.dot(w, y) / n, np.dot(w, p) / n
            cov = np.dot(w, (y - my) * (p - mp))
            var = np.dot(w, (y - my) ** 2) * np.dot(w, (p - mp) ** 2)
            out["pearson_r"] = float(cov / np.sqrt(var)) if var > 0 else np.nan
        return {m: out[m] for m in metrics}


def block_bootstrap(y: np.ndarray, p: np.ndarray, blocks: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                    metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """AUROC, AUPRC (unmethylated class) and RMSE with a block-bootstrap interval.

    Parameters
    ----------
    y
        ``(N,)`` measured beta.
    p
        ``(N,)`` predicted beta; or ``(S, N)``, the predictions of ``S`` runs of one model
        (seeds) at the same sites. Then each metric is the mean over the runs, and each
        replicate draws its blocks once and computes every run's metric on that same
        resample before averaging: the interval of the seed-mean metric, holding the
        variation of the hold-out sites, not of the seeds (their sd is reported apart).
    blocks
        ``(N,)`` integer block id of each site (:func:`hold_out_blocks`); sites with -1 are
        left out. Blocks without sites do not count.
    n_boot
        Bootstrap replicates.
    seed
        Seed of the block draws (same seed, same interval).
    level
        Coverage of the percentile interval.
    metrics
        Which metrics (names of :data:`SEED_METRICS`).

    Returns
    -------
    pd.DataFrame
        One row per metric of ``metrics``: ``metric``, ``estimate`` (on all sites),
        ``lo``, ``hi`` (percentile interval; replicates where a metric is undefined are
        skipped), ``n_blocks``, ``n``.
    """
    y, p, blocks = (np.asarray(a) for a in (y, p, blocks))
    keep = blocks >= 0
    y, p, blocks = y[keep].astype(np.float64), p[..., keep].astype(np.float64), blocks[keep]
    ids, members = np.unique(blocks, return_inverse=True)
    runs = [_Ranked(y, row) for row in np.atleast_2d(p)]
    rng = np.random.default_rng(seed)
    reps = {m: [] for m in metrics}
    for _ in range(n_boot):
        drawn = rng.integers(0, len(ids), len(ids))
        w = np.bincount(drawn, minlength=len(ids)).astype(np.float64)[members]  # a site counts as often as its block was drawn
        per_run = [r.metrics(w, metrics) for r in runs]
        for m in metrics:
            reps[m].append(float(np.mean([v[m] for v in per_run])))
    est = _metrics(y, p, metrics)
    alpha = (1 - level) / 2
    rows = []
    for m in metrics:
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


def seed_interval_rows(preds: list[pd.DataFrame], regions: pd.DataFrame, model: str, tissue: str, *, split: str = "test",
                       block_bp: int = BLOCK_BP, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Intervals of the seed-mean metrics (:data:`SEED_METRICS`) of one model.

    Parameters
    ----------
    preds
        One prediction table per seed (``chrom, pos, beta, beta_pred``), the same sites in
        the same order.
    regions, split, block_bp, n_boot, seed
        As for :func:`interval_rows`.

    Returns
    -------
    pd.DataFrame
        ``model, tissue, metric, estimate, lo, hi, n_blocks, n, seeds``: ``estimate`` is the
        mean over seeds of the metric on all sites (:func:`block_bootstrap` with ``(S, N)``
        predictions).

    Raises
    ------
    ValueError
        Prediction tables of different sites.
    """
    first = preds[0]
    for other in preds[1:]:
        if len(other) != len(first) or not np.array_equal(other["pos"].to_numpy(), first["pos"].to_numpy()):
            raise ValueError(f"{model}: the seeds' predictions are not at the same sites")
    blocks = hold_out_blocks(first["chrom"].to_numpy(), first["pos"].to_numpy(), regions, split, block_bp)
    p = np.stack([d["beta_pred"].to_numpy(np.float64) for d in preds])
    out = block_bootstrap(first["beta"].to_numpy(), p, blocks, n_boot=n_boot, seed=seed, metrics=SEED_METRICS)
    return pd.concat([pd.DataFrame({"model": model, "tissue": tissue}, index=out.index), out.assign(seeds=len(preds))], axis=1)
