"""The baselines: what sequence composition alone predicts, without a learned sequence model.

Every report carries both as model rows, so that it shows what a deep model adds:

- ``cpg_density`` (:func:`fit_predict`): a linear regression (scikit-learn) of beta on two
  features of the same window the model sees, the number of CpG dinucleotides and the GC
  fraction (CpG-poor, AT-rich sequence tends to be methylated; CpG islands are not).
- ``composition_gbm`` (:func:`fit_predict_gbm`): gradient-boosted trees (scikit-learn
  ``HistGradientBoostingRegressor``) on the multi-scale composition features of
  :mod:`methray.composition` (GC and CpG observed/expected from 100 bp to 100 kb, k-mer
  counts, flanking bases, CpG-island distance): regional context that a 400 bp window cannot
  see (partially methylated domains span hundreds of kb).

Both are fitted on the training split only; ``composition_gbm`` picks its number of trees
and its tree size on the validation split (never on the held-out test sites). Predictions
are clipped to [0, 1].
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression

from .composition import composition_features
from .encoding import WindowSpec, window_content
from .genome import open_reference

log = logging.getLogger(__name__)

NAME = "cpg_density"
GBM_NAME = "composition_gbm"
NAMES = (NAME, GBM_NAME)
"""Model names of the baselines, in the order reports list them."""

GBM_GRID = ({"max_leaf_nodes": 15}, {"max_leaf_nodes": 63})
"""Tree sizes tried; the one with the lowest validation MSE is kept."""
GBM_PARAMS = {"learning_rate": 0.05, "max_iter": 400, "min_samples_leaf": 50, "l2_regularization": 1.0}
GBM_PATIENCE = 20  # trees without a better validation loss before a setting stops


def features(df: pd.DataFrame, reference: str, spec: WindowSpec) -> np.ndarray:
    """CpG count and GC fraction of each site's window, ``(N, 2) float32``."""
    ref = open_reference(reference)
    out = np.empty((len(df), 2), dtype=np.float32)
    chroms = df["chrom"].to_numpy().astype(str)
    for chrom in np.unique(chroms):
        sel = chroms == chrom
        content = window_content(ref.windows(chrom, df["pos"].to_numpy(np.int64)[sel], spec))
        out[sel, 0], out[sel, 1] = content["cpg_count"], content["gc_fraction"]
    return out


def fit_predict(train: pd.DataFrame, test: pd.DataFrame, reference: str, spec: WindowSpec) -> np.ndarray:
    """Fit on ``train`` (columns chrom, pos, beta) and predict beta for ``test``, ``(M,) float32`` in [0, 1]."""
    reg = LinearRegression().fit(features(train, reference, spec), train["beta"].to_numpy())
    return np.clip(reg.predict(features(test, reference, spec)), 0.0, 1.0).astype(np.float32)


def fit_gbm(train: pd.DataFrame, val: pd.DataFrame, reference: str, cpg_islands: str | None, seed: int = 0) -> tuple[HistGradientBoostingRegressor, int]:
    """Fit ``composition_gbm`` on ``train``; choose tree size and number of trees on ``val``.

    Parameters
    ----------
    train, val
        Sites with ``chrom``, ``pos`` (0-based C) and measured ``beta``: the training and
        validation splits (never test sites).
    reference, cpg_islands
        Indexed FASTA and CpG-island BED (or None) the features are computed from.
    seed
        ``random_state`` of the trees.

    Returns
    -------
    tuple
        The fitted regressor (``max_iter`` trees) and the number of trees to predict with
        (the validation-best stage).
    """
    x_train = composition_features(train, reference, cpg_islands)
    x_val = composition_features(val, reference, cpg_islands)
    y_train, y_val = train["beta"].to_numpy(np.float64), val["beta"].to_numpy(np.float64)
    if len(val) == 0:  # nothing to tune on: the first setting, every tree
        log.warning(f"{GBM_NAME}: no validation sites; using {GBM_GRID[0]} and {GBM_PARAMS['max_iter']} trees untuned")
        reg = HistGradientBoostingRegressor(**GBM_PARAMS, **GBM_GRID[0], early_stopping=False, random_state=seed).fit(x_train, y_train)
        return reg, GBM_PARAMS["max_iter"]
    best = (np.inf, None, 0)
    for grid in GBM_GRID:
        # sklearn's early stopping on the validation split ends a setting GBM_PATIENCE trees
        # after its best one (instead of fitting all max_iter); the best stage is picked below.
        reg = HistGradientBoostingRegressor(
            **GBM_PARAMS, **grid, early_stopping=True, n_iter_no_change=GBM_PATIENCE, validation_fraction=None, random_state=seed
        ).fit(x_train, y_train, X_val=x_val, y_val=y_val)
        mse = [float(np.mean((np.clip(p, 0, 1) - y_val) ** 2)) for p in reg.staged_predict(x_val)]
        stage = int(np.argmin(mse))
        log.info(f"{GBM_NAME} {grid}: best validation MSE {mse[stage]:.4f} at {stage + 1} trees")
        if mse[stage] < best[0]:
            best = (mse[stage], reg, stage + 1)
    return best[1], best[2]


def predict_gbm(reg: HistGradientBoostingRegressor, n_trees: int, sites: pd.DataFrame, reference: str, cpg_islands: str | None) -> np.ndarray:
    """Predicted beta with the first ``n_trees`` trees, ``(N,) float32`` in [0, 1]."""
    x = composition_features(sites, reference, cpg_islands)
    for i, pred in enumerate(reg.staged_predict(x), start=1):
        if i == n_trees:
            break
    return np.clip(pred, 0.0, 1.0).astype(np.float32)


def fit_predict_gbm(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, reference: str, cpg_islands: str | None, seed: int = 0) -> np.ndarray:
    """:func:`fit_gbm` on ``train`` / ``val``, then predicted beta for ``test``, ``(M,) float32`` in [0, 1]."""
    reg, n_trees = fit_gbm(train, val, reference, cpg_islands, seed)
    return predict_gbm(reg, n_trees, test, reference, cpg_islands)
