"""The figure of a genome-wide scoring run (matplotlib, Agg backend, PNG).

Panels:

- error boxplots: ``|predicted - measured|`` beta by methylation group (hyper > 0.9,
  mid 0.4-0.6, hypo < 0.1; as in the MRCNN paper, Tian et al. 2019, Fig. 2), per tissue,
  on the held-out CpGs of each tissue's own model;
- ROC curves per tissue (methylated = measured beta > 0.5, score = predicted beta), same sites;
- a genome-browser panel: measured (dots) and predicted (line, every CpG) beta over a
  ``region_bp`` window, one track per tissue. The window is the one with the most measured
  held-out CpGs of the first tissue.
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


def run_figure(
    held_out: dict[str, pd.DataFrame],
    predictions: dict[str, pd.DataFrame],
    model_of: dict[str, str],
    path: str,
    region_bp: int = 50_000,
    title: str = "",
) -> str:
    """Draw the run figure (module docstring) and write it as PNG, atomically.

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

    Returns
    -------
    str
        ``path``.
    """
    tissues = [t for t, df in held_out.items() if len(df)]
    fig = plt.figure(figsize=(13, 4.2 + 2.0 * max(1, len(tissues))), dpi=110)
    grid = fig.add_gridspec(1 + max(1, len(tissues)), 2, height_ratios=[2.2] + [1.0] * max(1, len(tissues)), hspace=0.55, wspace=0.22)
    ax_box, ax_roc = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    width = 0.8 / max(1, len(tissues))
    for k, t in enumerate(tissues):
        df = held_out[t]
        y, err = df["beta"].to_numpy(float), np.abs(df["beta_pred"].to_numpy(float) - df["beta"].to_numpy(float))
        data = [err[sel(y)] for sel in GROUPS.values()]
        pos = np.arange(len(GROUPS)) + (k - (len(tissues) - 1) / 2) * width
        bp = ax_box.boxplot([d if len(d) else [np.nan] for d in data], positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False)
        for box in bp["boxes"]:
            box.set_facecolor(colors[k % len(colors)])
            box.set_alpha(0.6)
        ax_box.plot([], [], color=colors[k % len(colors)], lw=6, alpha=0.6, label=f"{t} ({model_of[t]})")
    ax_box.set_xticks(range(len(GROUPS)), [f"{g}\n" + {"hyper": "> 0.9", "mid": "0.4-0.6", "hypo": "< 0.1"}[g] for g in GROUPS])
    ax_box.set_ylabel("|predicted - measured| beta")
    ax_box.set_title("Error by methylation group (held-out CpGs)")
    ax_box.legend(fontsize=8)

    for k, t in enumerate(tissues):
        df = held_out[t]
        truth = df["beta"].to_numpy(float) > CUTOFF
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, df["beta_pred"].to_numpy(float))
        auc = roc_auc_score(truth, df["beta_pred"].to_numpy(float))
        ax_roc.plot(fpr, tpr, color=colors[k % len(colors)], label=f"{t}: AUROC {auc:.3f} (n={len(df):,})")
    ax_roc.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax_roc.set_xlabel("false positive rate")
    ax_roc.set_ylabel("true positive rate")
    ax_roc.set_title(f"ROC, methylated = beta > {CUTOFF} (held-out CpGs)")
    ax_roc.legend(fontsize=8, loc="lower right")

    if tissues:
        chrom, start, end = densest_window(held_out[tissues[0]], region_bp)
        for k, t in enumerate(tissues):
            ax = fig.add_subplot(grid[1 + k, :])
            p = predictions[t]
            p = p[(p["chrom"] == chrom) & (p["pos"] >= start) & (p["pos"] < end)]
            m = held_out[t]
            m = m[(m["chrom"] == chrom) & (m["pos"] >= start) & (m["pos"] < end)]
            ax.plot(p["pos"], p["beta_pred"], color=colors[k % len(colors)], lw=1, drawstyle="steps-mid", label=f"predicted ({len(p):,} CpGs)")
            ax.scatter(m["pos"], m["beta"], s=9, color="black", zorder=3, label=f"measured ({len(m):,})")
            ax.set_xlim(start, end)
            ax.set_ylim(-0.05, 1.05)
            ax.set_ylabel(f"{t}\nbeta")
            ax.legend(fontsize=7, loc="lower left", ncol=2, framealpha=0.85)
            ax.ticklabel_format(axis="x", style="plain", useOffset=False)
            if k == 0:
                ax.set_title(f"{chrom}:{start:,}-{end:,} (hg19, 0-based; {region_bp // 1000} kb)")
        ax.set_xlabel(f"{chrom} position (bp)")
    if title:
        fig.suptitle(title)
    with storage.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path
