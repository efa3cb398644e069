"""Per-class AUROC / AUPRC for multi-label classifiers (regulatory-element tasks).

AUPRC (average precision) is the primary metric: positives are rare (a few percent of windows
or less), and AUROC is dominated by the many easy negatives (DeepGMAP, Onimaru et al. 2020,
PLoS Comput Biol 16: e1007616, reports both; DeepSEA, Zhou & Troyanskaya 2015, Nat Methods
12: 931, reports AUROC). A class with no positives or no negatives in the evaluated set has no
defined AUROC / AUPRC: it is reported with NaN and left out of the means.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from .errors import MethrayError

MEAN_ROW = "mean"


def multilabel_metrics(y_true, y_score, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-class AUROC and AUPRC, plus their macro means over evaluable classes.

    Parameters
    ----------
    y_true
        ``(n, n_classes)`` 0/1 labels (any integer or bool dtype; a 1-D array is one class).
    y_score
        ``(n, n_classes)`` scores (probabilities or logits; only their order matters), finite.
    classes
        Class names, length ``n_classes``; default ``"0", "1", ...``.

    Returns
    -------
    pd.DataFrame
        One row per class, then a ``mean`` row; columns ``class`` (str), ``n`` (windows
        evaluated), ``n_pos`` (positives), ``auroc``, ``auprc`` (float64; NaN for a class with
        no positives or no negatives), ``n_classes`` (int64: 1 for an evaluable class, 0 for a
        skipped one). The ``mean`` row has ``n`` = number of windows, ``n_pos`` = positives
        summed over evaluable classes, ``n_classes`` = number of evaluable classes, and the
        unweighted (macro) means of ``auroc`` / ``auprc`` over evaluable classes (NaN if none).
        ``df.attrs`` holds ``n_evaluable`` and ``n_skipped``.

    Raises
    ------
    MethrayError
        Shape mismatch, labels other than 0/1, non-finite scores, wrong number of class names.
    """
    yt = np.asarray(y_true)
    ys = np.asarray(y_score, dtype=np.float64)
    if yt.ndim == 1:
        yt = yt[:, None]
    if ys.ndim == 1:
        ys = ys[:, None]
    if yt.ndim != 2 or yt.shape != ys.shape:
        raise MethrayError(f"y_true and y_score must have the same (n, n_classes) shape, got {yt.shape} and {ys.shape}")
    if not np.isin(yt, (0, 1)).all():
        raise MethrayError("y_true must contain only 0 and 1")
    if not np.isfinite(ys).all():
        raise MethrayError("y_score contains NaN or infinite values")
    n, n_cls = yt.shape
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n_cls)]
    if len(names) != n_cls:
        raise MethrayError(f"{len(names)} class names for {n_cls} label columns")
    yt = yt.astype(np.int64)
    rows = []
    for k, name in enumerate(names):
        n_pos = int(yt[:, k].sum())
        ok = 0 < n_pos < n
        auroc = float(roc_auc_score(yt[:, k], ys[:, k])) if ok else np.nan
        auprc = float(average_precision_score(yt[:, k], ys[:, k])) if ok else np.nan
        rows.append({"class": name, "n": n, "n_pos": n_pos, "auroc": auroc, "auprc": auprc, "n_classes": int(ok)})
    df = pd.DataFrame(rows, columns=["class", "n", "n_pos", "auroc", "auprc", "n_classes"])
    ev = df["n_classes"].to_numpy() == 1
    mean = {
        "class": MEAN_ROW, "n": n, "n_pos": int(df.loc[ev, "n_pos"].sum()),
        "auroc": float(df.loc[ev, "auroc"].mean()) if ev.any() else np.nan,
        "auprc": float(df.loc[ev, "auprc"].mean()) if ev.any() else np.nan,
        "n_classes": int(ev.sum()),
    }
    df = pd.concat([df, pd.DataFrame([mean])], ignore_index=True)
    df = df.astype({"n": np.int64, "n_pos": np.int64, "auroc": np.float64, "auprc": np.float64, "n_classes": np.int64})
    df.attrs["n_evaluable"] = int(ev.sum())
    df.attrs["n_skipped"] = int(n_cls - ev.sum())
    return df
