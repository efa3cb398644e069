"""Metrics, tables and the figure of the expression job.

Per gene, model and fold, on the held-out samples: R^2 (``1 - SSE / SS`` around the held-out
mean, scikit-learn's ``r2_score``; negative when worse than that mean), Pearson r (NaN when the
prediction or the truth is constant, e.g. the training-fold mean) and RMSE (log2 units).
A gene's score is the mean over its folds. DeepMethyGene is compared with each baseline over
genes: the fraction of genes where its mean R^2 is higher, and a paired two-sided Wilcoxon
signed-rank test (scipy) of the per-gene mean R^2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import r2_score

from .. import storage
from .data import ExpressionData

REFERENCE = "deepmethygene"
METRICS = ("r2", "r", "rmse")


def fold_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R^2, Pearson r and RMSE of ``pred`` against ``y`` (both ``(N,)``)."""
    varies = len(y) > 1 and np.ptp(y) > 0 and np.ptp(pred) > 0
    return {
        "r2": float(r2_score(y, pred)) if len(y) > 1 else np.nan,
        "r": float(stats.pearsonr(y, pred)[0]) if varies else np.nan,
        "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
    }


def gene_table(records: dict, data: ExpressionData, folds: np.ndarray, models: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-gene table and the out-of-fold predictions.

    Returns
    -------
    genes : pd.DataFrame
        One row per (gene, model): ``gene_id``, ``symbol``, ``n_cpgs``, ``model``,
        ``r2_fold1`` .. ``r2_foldK``, ``r_fold*``, ``rmse_fold*``, their means ``r2_mean``,
        ``r_mean`` (NaN folds skipped), ``rmse_mean``, ``r2_pooled`` (R^2 of all out-of-fold
        predictions together), ``epochs_mean`` (deepmethygene) and ``seeds``.
    predictions : pd.DataFrame
        One row per (gene, model, sample): ``gene_id``, ``model``, ``sample``, ``fold``,
        ``y`` (log2 expression), ``pred``.
    """
    k = int(folds.max()) + 1
    rows, preds = [], []
    for j, g in enumerate(data.genes):
        y = data.expression.iloc[j].to_numpy(np.float64)
        for model in models:
            rec = records[(model, g.gene_id)]
            p = np.asarray(rec["pred"], dtype=np.float64)
            row = {"gene_id": g.gene_id, "symbol": g.symbol, "n_cpgs": g.n_cpgs, "model": model}
            per = [fold_metrics(y[folds == f], p[folds == f]) for f in range(k)]
            for m in METRICS:
                vals = np.array([d[m] for d in per])
                row.update({f"{m}_fold{f + 1}": v for f, v in enumerate(vals)})
                row[f"{m}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
            row["r2_pooled"] = float(r2_score(y, p))
            ep = [e for e in rec.get("epochs") or [] if e is not None]
            row["epochs_mean"] = float(np.mean(ep)) if ep else np.nan
            row["seeds"] = ",".join(map(str, rec["seeds"]))
            rows.append(row)
            preds.append(pd.DataFrame({"gene_id": g.gene_id, "model": model, "sample": data.samples, "fold": folds, "y": y, "pred": p}))
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)


def summary_table(genes: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Per model: genes, median / mean R^2, median r, median RMSE, and against ``reference``.

    Columns ``frac_genes_ref_better`` (fraction of genes where the reference model's mean R^2
    is higher than this model's) and ``wilcoxon_p`` (paired two-sided Wilcoxon signed-rank
    test of the per-gene mean R^2, reference vs this model; NaN for the reference itself or
    when every difference is zero).
    """
    wide = genes.pivot(index="gene_id", columns="model", values="r2_mean")
    out = []
    for model, df in genes.groupby("model", sort=False):
        row = {
            "model": model,
            "n_genes": len(df),
            "median_r2": df["r2_mean"].median(),
            "mean_r2": df["r2_mean"].mean(),
            "median_r2_pooled": df["r2_pooled"].median(),
            "median_r": df["r_mean"].median(),
            "median_rmse": df["rmse_mean"].median(),
            "frac_genes_ref_better": np.nan,
            "wilcoxon_p": np.nan,
        }
        if model != reference and reference in wide:
            diff = (wide[reference] - wide[model]).dropna()
            row["frac_genes_ref_better"] = float((diff > 0).mean())
            if (diff != 0).any():
                row["wilcoxon_p"] = float(stats.wilcoxon(wide.loc[diff.index, reference], wide.loc[diff.index, model]).pvalue)
        out.append(row)
    return pd.DataFrame(out)


def plot_figure(genes: pd.DataFrame, path: str, title: str = "") -> None:
    """``figure.png``: the per-gene mean R^2 by model (box plot with the genes as points) and
    R^2 against the number of CpGs of the gene (one colour per model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(genes["model"]))
    data = [genes.loc[genes["model"] == m, "r2_mean"].to_numpy() for m in models]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    a.boxplot(data, showfliers=False)
    a.set_xticks(range(1, len(models) + 1), models, rotation=20)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        a.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=8, alpha=0.6, color="k")
    a.axhline(0, color="grey", lw=0.8, ls="--")
    a.set_ylabel("R$^2$ (mean over held-out folds)")
    a.set_title("R$^2$ per gene, by model")
    for m in models:
        df = genes[genes["model"] == m]
        b.scatter(df["n_cpgs"], df["r2_mean"], s=12, alpha=0.7, label=m)
    b.axhline(0, color="grey", lw=0.8, ls="--")
    b.set_xlabel("CpGs (probes) of the gene")
    b.set_ylabel("R$^2$")
    b.set_title("R$^2$ against the number of CpGs")
    b.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with storage.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
