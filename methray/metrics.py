"""The metric table: how well predicted beta values match measured ones.

For a set of CpGs with measured beta ``y`` and predicted beta ``p`` (both 0..1):

- ``n``, ``rmse``, ``mae``, ``pearson_r``, ``spearman_rho`` over all sites;
- ``n_*`` (sites), ``rmse_*`` / ``mae_*`` within the groups of the MRCNN paper (Tian et al.
  2019, Fig. 2): ``hyper`` (y > 0.9), ``mid`` (0.4 <= y <= 0.6), ``hypo`` (y < 0.1);
- binary calls at cutoff 0.5 (methylated = beta > 0.5): ``sensitivity``, ``specificity``,
  ``accuracy``, and ``auroc`` (measured call vs predicted beta as the score);
- ``auprc_unmeth``: average precision (area under the precision-recall curve) for the
  unmethylated class (measured beta <= 0.5 as positives, ``1 - predicted beta`` as the
  score). Most CpGs are methylated, so AUROC alone flatters; this is the metric of the
  minority class.

Each is computed for ``subset`` in ``all``, ``cgi`` (inside CpG islands) and ``non_cgi``.
Statistics use scikit-learn and SciPy; undefined values (a group with no sites, AUROC with
one class) are NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm

COLUMNS = [
    "model", "tissue", "subset", "n", "n_hyper", "n_mid", "n_hypo", "rmse", "mae", "pearson_r", "spearman_rho",
    "rmse_hyper", "mae_hyper", "rmse_mid", "mae_mid", "rmse_hypo", "mae_hypo",
    "sensitivity", "specificity", "accuracy", "auroc", "auprc_unmeth",
]
GROUPS = {"hyper": lambda y: y > 0.9, "mid": lambda y: (y >= 0.4) & (y <= 0.6), "hypo": lambda y: y < 0.1}
CUTOFF = 0.5


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Site counts, RMSE, MAE, Pearson r and Spearman rho, overall and per methylation group.

    Parameters
    ----------
    y, p
        ``(N,)`` measured and predicted beta.
    """
    out: dict[str, float] = {"n": int(len(y))} | {f"n_{name}": int(select(y).sum()) for name, select in GROUPS.items()}
    if len(y) == 0:
        return out | {k: np.nan for k in COLUMNS[COLUMNS.index("rmse") : COLUMNS.index("sensitivity")]}
    out["rmse"] = float(np.sqrt(skm.mean_squared_error(y, p)))
    out["mae"] = float(skm.mean_absolute_error(y, p))
    varies = len(y) > 1 and np.std(y) > 0 and np.std(p) > 0
    out["pearson_r"] = float(stats.pearsonr(y, p)[0]) if varies else np.nan
    out["spearman_rho"] = float(stats.spearmanr(y, p)[0]) if varies else np.nan
    for name, select in GROUPS.items():
        sel = select(y)
        out[f"rmse_{name}"] = float(np.sqrt(skm.mean_squared_error(y[sel], p[sel]))) if sel.any() else np.nan
        out[f"mae_{name}"] = float(skm.mean_absolute_error(y[sel], p[sel])) if sel.any() else np.nan
    return out


def classification_metrics(y: np.ndarray, p: np.ndarray, cutoff: float = CUTOFF) -> dict[str, float]:
    """Sensitivity, specificity, accuracy at ``cutoff``, AUROC (methylated = beta > cutoff) and
    AUPRC of the unmethylated class (beta <= cutoff positive, score ``1 - p``)."""
    truth, call = y > cutoff, p > cutoff
    if len(y) == 0:
        return {"sensitivity": np.nan, "specificity": np.nan, "accuracy": np.nan, "auroc": np.nan, "auprc_unmeth": np.nan}
    tn, fp, fn, tp = skm.confusion_matrix(truth, call, labels=[False, True]).ravel()
    both = truth.any() and (~truth).any()
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else np.nan,
        "specificity": tn / (tn + fp) if tn + fp else np.nan,
        "accuracy": (tp + tn) / len(y),
        "auroc": float(skm.roc_auc_score(truth, p)) if both else np.nan,
        "auprc_unmeth": auprc_unmethylated(y, p, cutoff),
    }


def auprc_unmethylated(y: np.ndarray, p: np.ndarray, cutoff: float = CUTOFF) -> float:
    """Average precision for the unmethylated class (scikit-learn ``average_precision_score``).

    Parameters
    ----------
    y, p
        ``(N,)`` measured and predicted beta; positives are ``y <= cutoff``, the score is ``1 - p``.

    Returns
    -------
    float
        NaN when every site is of one class.
    """
    positive = np.asarray(y) <= cutoff
    if positive.all() or not positive.any():
        return np.nan
    return float(skm.average_precision_score(positive, 1.0 - np.asarray(p)))


def metric_rows(df: pd.DataFrame, model: str, tissue: str, pred_col: str = "beta_pred") -> pd.DataFrame:
    """Metric rows for one (model, tissue): subsets ``all``, ``cgi``, ``non_cgi``.

    Parameters
    ----------
    df
        Columns ``beta`` (measured), ``pred_col`` (predicted), ``in_cpg_island`` (bool).

    Returns
    -------
    pd.DataFrame
        Three rows with the columns :data:`COLUMNS`.
    """
    rows = []
    island = df["in_cpg_island"].to_numpy(bool)
    for subset, sel in (("all", np.ones(len(df), bool)), ("cgi", island), ("non_cgi", ~island)):
        y = df["beta"].to_numpy(np.float64)[sel]
        p = df[pred_col].to_numpy(np.float64)[sel]
        rows.append({"model": model, "tissue": tissue, "subset": subset, **regression_metrics(y, p), **classification_metrics(y, p)})
    return pd.DataFrame(rows, columns=COLUMNS)
