"""The figure of a genome-wide scoring run (matplotlib, Agg backend, PNG).

With measured data (:func:`run_figure`), panels:

- error boxplots: ``|predicted - measured|`` beta by methylation group (hyper > 0.9,
  mid 0.4-0.6, hypo < 0.1; as in the MRCNN paper, Tian et al. 2019, Fig. 2), per tissue,
  on the held-out CpGs of each tissue's own model; the number of CpGs under each box;
- ROC curves per tissue (methylated = measured beta > 0.5, score = predicted beta), same sites;
- a genome-browser panel: measured (dots) and predicted (dots joined by a line only between
  CpGs at most ``max_gap_bp`` apart, so stretches without CpGs stay empty) beta over a
  ``region_bp`` window, one track per tissue. The window is the one with the most measured
  held-out CpGs of the first tissue.

Without measured data (:func:`predictions_figure`): the distribution of predicted beta per
tissue inside and outside CpG islands (violins, with CpG counts), and the same browser panel
with predictions only, over the window with the most CpGs.

Legends sit outside the plotting areas; the genome's name comes from the config.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from . import storage  # noqa: E402
from .metrics import CUTOFF, GROUPS  # noqa: E402

MAX_GAP_BP = 500  # the browser panel joins predictions of CpGs at most this far apart
GROUP_LABELS = {"hyper": "> 0.9", "mid": "0.4-0.6", "hypo": "< 0.1"}


def densest_window(df: pd.DataFrame, width: int) -> tuple[str, int, int]:
    """The ``width``-bp window ``(chrom, start, end)`` starting at a site of ``df`` that holds the most sites.

    Parameters
    ----------
    df
        ``chrom``, ``pos`` (0-based), any order; must not be empty.
    """
    best = (0, None)
    for chrom, grp in df.groupby("chrom", sort=False):
        pos = np.sort(grp["pos"].to_numpy(np.int64))
        n = np.searchsorted(pos, pos + width) - np.arange(len(pos))
        i = int(np.argmax(n))
        if n[i] > best[0]:
            best = (int(n[i]), (str(chrom), int(pos[i]), int(pos[i]) + width))
    return best[1]


def gapped_line(pos: np.ndarray, value: np.ndarray, max_gap_bp: int = MAX_GAP_BP) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` for ``plot`` with NaN breaks where consecutive sites are more than ``max_gap_bp`` apart.

    Parameters
    ----------
    pos, value
        ``(N,)`` sorted positions (bp) and values.

    Returns
    -------
    tuple
        ``(N + k,)`` float arrays, ``k`` = number of gaps; matplotlib draws no line across NaN.
    """
    pos, value = np.asarray(pos, float), np.asarray(value, float)
    breaks = np.flatnonzero(np.diff(pos) > max_gap_bp) + 1
    return np.insert(pos, breaks, np.nan), np.insert(value, breaks, np.nan)


def _browser_track(ax, pred: pd.DataFrame, color, label: str, max_gap_bp: int) -> None:
    pred = pred.sort_values("pos")
    x, y = gapped_line(pred["pos"].to_numpy(), pred["beta_pred"].to_numpy(), max_gap_bp)
    ax.plot(x, y, color=color, lw=1)
    ax.scatter(pred["pos"], pred["beta_pred"], s=4, color=color, label=label)


def _browser_axes(ax, chrom: str, start: int, end: int, ylabel: str) -> None:
    ax.set_xlim(start, end)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel(ylabel)
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)


def _save(fig, path: str, title: str) -> str:
    if title:
        fig.suptitle(title)
    with storage.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def run_figure(
    held_out: dict[str, pd.DataFrame],
    predictions: dict[str, pd.DataFrame],
    model_of: dict[str, str],
    path: str,
    region_bp: int = 50_000,
    title: str = "",
    genome: str = "",
    max_gap_bp: int = MAX_GAP_BP,
) -> str:
    """Draw the run figure with measured data (module docstring) and write it as PNG, atomically.

    Parameters
    ----------
    held_out
        Tissue -> measured CpGs joined with its own model's predictions on the model's
        held-out regions: ``chrom, pos, beta, beta_pred``.
    predictions
        Tissue -> genome-wide predictions ``chrom, pos, beta_pred`` (for the browser panel).
    model_of
        Tissue -> model name (legend labels).
    path
        Output PNG (local or ``s3://``).
    genome
        Assembly name (config ``genome``) for the browser panel's title.

    Returns
    -------
    str
        ``path``.
    """
    tissues = [t for t, df in held_out.items() if len(df)]
    if not tissues:
        return predictions_figure(predictions, model_of, path, region_bp, title, genome, max_gap_bp)
    fig = plt.figure(figsize=(14, 4.4 + 2.0 * len(tissues)), dpi=110)
    grid = fig.add_gridspec(1 + len(tissues), 2, height_ratios=[2.2] + [1.0] * len(tissues), hspace=0.6, wspace=0.45)
    ax_box, ax_roc = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    width = 0.8 / len(tissues)
    for k, t in enumerate(tissues):
        df = held_out[t]
        y, err = df["beta"].to_numpy(float), np.abs(df["beta_pred"].to_numpy(float) - df["beta"].to_numpy(float))
        data = [err[sel(y)] for sel in GROUPS.values()]
        pos = np.arange(len(GROUPS)) + (k - (len(tissues) - 1) / 2) * width
        bp = ax_box.boxplot([d if len(d) else [np.nan] for d in data], positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False)
        for box in bp["boxes"]:
            box.set_facecolor(colors[k % len(colors)])
            box.set_alpha(0.6)
        for x, d in zip(pos, data):  # CpGs per box, under the axis
            ax_box.annotate(f"n={len(d):,}", (x, 0), xycoords=("data", "axes fraction"), xytext=(0, -26), textcoords="offset points",
                            ha="center", va="top", fontsize=7, color=colors[k % len(colors)])
        ax_box.plot([], [], color=colors[k % len(colors)], lw=6, alpha=0.6, label=f"{t} ({model_of[t]})")
    ax_box.set_xticks(range(len(GROUPS)), [f"{g} {GROUP_LABELS[g]}" for g in GROUPS])
    ax_box.set_ylabel("|predicted - measured| beta")
    ax_box.set_title("Error by methylation group (held-out CpGs)")
    ax_box.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)

    for k, t in enumerate(tissues):
        df = held_out[t]
        truth = df["beta"].to_numpy(float) > CUTOFF
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, df["beta_pred"].to_numpy(float))
        auc = roc_auc_score(truth, df["beta_pred"].to_numpy(float))
        ax_roc.plot(fpr, tpr, color=colors[k % len(colors)], label=f"{t}: AUROC {auc:.3f}\n(n={len(df):,})")
    ax_roc.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax_roc.set_xlabel("false positive rate")
    ax_roc.set_ylabel("true positive rate")
    ax_roc.set_title(f"ROC, methylated = beta > {CUTOFF} (held-out CpGs)")
    ax_roc.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)

    chrom, start, end = densest_window(held_out[tissues[0]], region_bp)
    for k, t in enumerate(tissues):
        ax = fig.add_subplot(grid[1 + k, :])
        p = predictions[t]
        p = p[(p["chrom"] == chrom) & (p["pos"] >= start) & (p["pos"] < end)]
        m = held_out[t]
        m = m[(m["chrom"] == chrom) & (m["pos"] >= start) & (m["pos"] < end)]
        _browser_track(ax, p, colors[k % len(colors)], f"predicted\n({len(p):,} CpGs)", max_gap_bp)
        ax.scatter(m["pos"], m["beta"], s=9, color="black", zorder=3, label=f"measured\n({len(m):,})")
        _browser_axes(ax, chrom, start, end, f"{t}\nbeta")
        if k == 0:
            ax.set_title(f"{chrom}:{start:,}-{end:,} ({genome + ', ' if genome else ''}0-based; {region_bp // 1000} kb); "
                         f"lines join CpGs <= {max_gap_bp} bp apart")
    ax.set_xlabel(f"{chrom} position (bp)")
    return _save(fig, path, title)


def predictions_figure(
    predictions: dict[str, pd.DataFrame],
    model_of: dict[str, str],
    path: str,
    region_bp: int = 50_000,
    title: str = "",
    genome: str = "",
    max_gap_bp: int = MAX_GAP_BP,
) -> str:
    """Draw the figure of predictions alone (no measured data; module docstring), PNG, atomically.

    Parameters
    ----------
    predictions
        Tissue -> genome-wide predictions ``chrom, pos, beta_pred, in_cpg_island``.
    model_of
        Tissue -> model name.
    path
        Output PNG (local or ``s3://``).
    genome
        Assembly name (config ``genome``).

    Returns
    -------
    str
        ``path``.
    """
    tissues = [t for t, df in predictions.items() if len(df)]
    n = max(1, len(tissues))
    fig = plt.figure(figsize=(14, 4.4 + 2.0 * n), dpi=110)
    grid = fig.add_gridspec(1 + n, 1, height_ratios=[2.2] + [1.0] * n, hspace=0.6)
    ax_dist = fig.add_subplot(grid[0, 0])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    classes = (("CpG island", True), ("outside islands", False))
    width = 0.8 / n
    for k, t in enumerate(tissues):
        df = predictions[t]
        island = df["in_cpg_island"].to_numpy(bool)
        data = [df["beta_pred"].to_numpy(float)[island == flag] for _, flag in classes]
        pos = np.arange(len(classes)) + (k - (n - 1) / 2) * width
        keep = [i for i, d in enumerate(data) if len(d)]
        if keep:
            parts = ax_dist.violinplot([data[i] for i in keep], positions=pos[keep], widths=width * 0.9, showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(colors[k % len(colors)])
                body.set_alpha(0.6)
        for x, d in zip(pos, data):
            ax_dist.annotate(f"n={len(d):,}", (x, 0), xycoords=("data", "axes fraction"), xytext=(0, -26), textcoords="offset points",
                             ha="center", va="top", fontsize=7, color=colors[k % len(colors)])
        ax_dist.plot([], [], color=colors[k % len(colors)], lw=6, alpha=0.6, label=f"{t} ({model_of[t]})")
    ax_dist.set_xticks(range(len(classes)), [c for c, _ in classes])
    ax_dist.set_ylim(-0.05, 1.05)
    ax_dist.set_ylabel("predicted beta")
    ax_dist.set_title(f"Predicted beta of every scored CpG{' (' + genome + ')' if genome else ''}; no tissue has measured data")
    ax_dist.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)

    if tissues:
        chrom, start, end = densest_window(predictions[tissues[0]], region_bp)
        for k, t in enumerate(tissues):
            ax = fig.add_subplot(grid[1 + k, 0])
            p = predictions[t]
            p = p[(p["chrom"] == chrom) & (p["pos"] >= start) & (p["pos"] < end)]
            _browser_track(ax, p, colors[k % len(colors)], f"predicted\n({len(p):,} CpGs)", max_gap_bp)
            _browser_axes(ax, chrom, start, end, f"{t}\nbeta")
            if k == 0:
                ax.set_title(f"{chrom}:{start:,}-{end:,} ({genome + ', ' if genome else ''}0-based; {region_bp // 1000} kb, "
                             f"the window with the most CpGs); lines join CpGs <= {max_gap_bp} bp apart")
        ax.set_xlabel(f"{chrom} position (bp)")
    return _save(fig, path, title)
