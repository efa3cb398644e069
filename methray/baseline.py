"""The CpG-density baseline: what sequence composition alone predicts.

A linear regression (scikit-learn) of beta on two features of the same window the model
sees: the number of CpG dinucleotides and the GC fraction (CpG-poor, AT-rich sequence tends
to be methylated; CpG islands are not). Fitted on the training split, evaluated on the
held-out split; predictions clipped to [0, 1]. Every report carries it as the model
``cpg_density``, so that it shows what a deep model adds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from .encoding import WindowSpec, window_content
from .genome import open_reference

NAME = "cpg_density"


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
