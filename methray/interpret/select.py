"""Choosing the CpGs to interpret: held-out sites by measured group, as in MRCNN (Tian et al. 2019, Fig. 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..encoding import N_CODE
from ..errors import MethrayError

GROUPS = {"hypo": (None, 0.1), "mid": (0.4, 0.6), "hyper": (0.9, None)}
"""Measured beta groups: hypo < 0.1, mid 0.4-0.6 (inclusive), hyper > 0.9 (the README's metric groups)."""


def group_of(beta: np.ndarray) -> np.ndarray:
    """Group name per beta value (``""`` for values in no group), ``(N,) object``."""
    beta = np.asarray(beta, float)
    out = np.full(len(beta), "", dtype=object)
    out[beta < 0.1] = "hypo"
    out[(beta >= 0.4) & (beta <= 0.6)] = "mid"
    out[beta > 0.9] = "hyper"
    return out


def select_sites(sites: pd.DataFrame, ref, meta: dict, n_per_group: int, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Draw ``n_per_group`` CpGs per group whose model window is all A/C/G/T.

    Parameters
    ----------
    sites
        Measured sites of one tissue and split: ``chrom``, ``pos`` (0-based C), ``beta``.
    ref
        The :class:`~methray.genome.Reference`.
    meta
        The checkpoint's metadata (its window).
    n_per_group
        Sites per group (fewer when a group has fewer eligible sites).

    Returns
    -------
    (pd.DataFrame, dict)
        The chosen sites (``chrom, pos, beta, group, cpg_id``; ``cpg_id`` = ``chrom:pos``),
        ordered hypo, mid, hyper then position; and counts per group: ``available``,
        ``with_n`` (window holds an N: dinucleotide shuffling needs A/C/G/T only; skipped,
        counted), ``chosen``.
    """
    spec = meta.window
    sites = sites.assign(group=group_of(sites["beta"].to_numpy()))
    rng = np.random.default_rng(seed)
    parts, counts = [], {}
    for g in GROUPS:
        sub = sites[sites["group"] == g]
        has_n = np.zeros(len(sub), bool)
        for c in sub["chrom"].unique():
            rows = np.flatnonzero((sub["chrom"] == c).to_numpy())
            has_n[rows] = (ref.windows(c, sub["pos"].to_numpy(np.int64)[rows], spec) == N_CODE).any(axis=1)
        ok = sub[~has_n]
        take = ok.iloc[np.sort(rng.choice(len(ok), size=min(n_per_group, len(ok)), replace=False))] if len(ok) else ok
        counts[g] = {"available": int(len(sub)), "with_n": int(has_n.sum()), "chosen": int(len(take))}
        parts.append(take)
    out = pd.concat(parts, ignore_index=True)[["chrom", "pos", "beta", "group"]]
    if out.empty:
        raise MethrayError("interpret: no held-out CpG in any group (hypo < 0.1, mid 0.4-0.6, hyper > 0.9)")
    out["chrom"] = out["chrom"].astype(str)
    out["cpg_id"] = out["chrom"] + ":" + out["pos"].astype(str)
    return out, counts
