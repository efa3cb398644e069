"""Motifs from a model: TF-MoDISco on attributions, first-layer filter PWMs, JASPAR matching with Tomtom.

- :func:`modisco_motifs`: TF-MoDISco (modisco-lite, Shrikumar et al. 2018) on one group's
  one-hot windows and hypothetical contributions; each pattern becomes a PPM trimmed to the
  positions carrying at least :data:`TRIM_FRACTION` of the pattern's peak contribution.
- :func:`filter_pwms`: for models whose first layer is a DNA convolution spanning positions
  (``nn.Conv1d`` on the 4 base channels, width > 1: Basset, DeepSEA, DanQ, DeepCpG,
  conv4-FRSS), the sub-sequences that activate each filter above ``threshold`` x its maximum
  over the windows, stacked into a PPM (DeepBind, Alipanahi et al. 2015; Basset, Kelley et
  al. 2016). MRCNN's first layer is a 1x4 convolution over one base at a time: it spans no
  positions, so it has no filter motifs and MRCNN's motifs come from attributions only.
- :func:`jaspar_motifs`: JASPAR CORE vertebrates from pyjaspar's bundled SQLite database
  (no network); the release is recorded in every output.
- :func:`match_motifs`: memelite's Tomtom (complete score, both strands) of every motif
  against JASPAR; q-values by Benjamini-Hochberg over each query's p-values (as Tomtom's
  q-values per query), significant at ``q < 0.05`` (MRCNN, Tian et al. 2019).

Motifs are PPMs ``(L, 4) float`` in A, C, G, T order, rows summing to 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

TRIM_FRACTION = 0.3
JASPAR_RELEASE = "JASPAR2024"
MIN_MOTIF_BITS = 10.0
"""Total information content (bits) below which a motif is flagged as not informative: Tomtom
gives long, nearly uniform queries small p-values against long matrices (measured: 22-47 bp
TF-MoDISco patterns of 3-8 bits matched the 34 bp CTCF matrices MA1929/MA1930 at q < 1e-6).
JASPAR's CTCF MA0139 carries about 20 bits."""


def information_bits(ppm: np.ndarray) -> float:
    """Total information content of a PPM ``(L, 4)``, bits (uniform background)."""
    p = np.clip(np.asarray(ppm, float), 1e-9, 1)
    p = p / p.sum(axis=1, keepdims=True)
    return float((2 + (p * np.log2(p)).sum(axis=1)).sum())


def _trim(ppm: np.ndarray, cwm: np.ndarray, min_len: int = 4) -> np.ndarray:
    score = np.abs(cwm).sum(axis=1)
    keep = np.flatnonzero(score >= TRIM_FRACTION * score.max())
    lo, hi = int(keep.min()), int(keep.max()) + 1
    while hi - lo < min_len and (lo > 0 or hi < len(ppm)):
        lo, hi = max(0, lo - 1), min(len(ppm), hi + 1)
    return ppm[lo:hi]


def modisco_motifs(x: np.ndarray, hyp: np.ndarray, *, max_seqlets: int = 2000, window: int = 15, flank: int = 5,
                   min_metacluster_size: int = 20, final_min_cluster_size: int = 10, n_leiden_runs: int = 5) -> list[dict]:
    """TF-MoDISco patterns of one group of windows.

    Parameters
    ----------
    x
        One-hot windows, ``(N, L, 4)``.
    hyp
        Hypothetical contributions, ``(N, L, 4) float32`` (DeepLIFT-SHAP).
    max_seqlets, window, flank, min_metacluster_size, final_min_cluster_size, n_leiden_runs
        modisco-lite settings, scaled down from its defaults (built for 10^4 peaks) to groups
        of a few hundred CpG windows.

    Returns
    -------
    list[dict]
        Per pattern: ``name`` (``pos_0``, ``neg_1``, ...: sign of the contributions),
        ``ppm`` ``(W, 4)`` trimmed, ``cwm`` ``(W, 4)`` (contribution weight matrix),
        ``n_seqlets``. Empty when no seqlet metacluster is large enough.
    """
    from modiscolite.tfmodisco import TFMoDISco

    x = np.asarray(x, np.float32)
    hyp = np.asarray(hyp, np.float32)
    try:
        pos, neg = TFMoDISco(x, hyp, sliding_window_size=window, flank_size=flank, max_seqlets_per_metacluster=max_seqlets,
                             min_metacluster_size=min_metacluster_size, final_min_cluster_size=final_min_cluster_size,
                             n_leiden_runs=n_leiden_runs, verbose=False)
    except (ValueError, IndexError) as exc:  # too few seqlets for any clustering
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    out = []
    for sign, patterns in (("pos", pos or []), ("neg", neg or [])):
        for i, p in enumerate(patterns):
            ppm = np.asarray(p.sequence, float)
            cwm = np.asarray(p.contrib_scores, float)
            ppm_t = _trim(ppm, cwm)
            out.append({"name": f"{sign}_{i}", "ppm": ppm_t / ppm_t.sum(axis=1, keepdims=True), "cwm": cwm, "n_seqlets": len(p.seqlets)})
    return out


def first_dna_conv(model: nn.Module) -> nn.Conv1d | None:
    """The model's first ``nn.Conv1d`` over the 4 base channels with a kernel wider than 1, or None."""
    for m in model.modules():
        if isinstance(m, nn.Conv1d) and m.in_channels == 4 and m.kernel_size[0] > 1:
            return m
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.LSTM)):
            return None  # the first layer is something else (MRCNN: a 1x4 Conv2d)
    return None


def filter_pwms(model: nn.Module, x: np.ndarray, *, threshold: float = 0.5, min_sites: int = 10) -> list[dict]:
    """First-layer filter motifs (DeepBind / Basset): sub-sequences activating each filter.

    Parameters
    ----------
    model
        A methray sequence model ``(N, L, 4) -> (N, n_outputs)``.
    x
        One-hot windows ``(N, L, 4)``.
    threshold
        A window position counts when the filter's activation exceeds ``threshold`` x the
        filter's maximum activation over all windows (Kelley et al. 2016 use 0.5).
    min_sites
        Filters with fewer activating sub-sequences are left out.

    Returns
    -------
    list[dict]
        Per filter: ``name`` (``filter_<i>``), ``ppm`` ``(W, 4)``, ``n_sites``. Empty list if
        the model has no first-layer DNA convolution (see :func:`first_dna_conv`).
    """
    conv = first_dna_conv(model)
    if conv is None:
        return []
    acts = []
    handle = conv.register_forward_hook(lambda mod, inp, out: acts.append(out.detach()))
    try:
        with torch.no_grad():
            model(torch.from_numpy(np.asarray(x, np.float32)))
    finally:
        handle.remove()
    a = acts[0].numpy()  # (N, F, L')
    w = conv.kernel_size[0]
    pad = conv.padding[0] if isinstance(conv.padding, tuple) else 0
    xp = np.pad(np.asarray(x, np.float32), ((0, 0), (pad, pad), (0, 0)))
    out = []
    for f in range(a.shape[1]):
        top = a[:, f, :].max()
        if top <= 0:
            continue
        n_idx, p_idx = np.nonzero(a[:, f, :] > threshold * top)
        p_idx = p_idx * conv.stride[0]
        ok = p_idx + w <= xp.shape[1]
        if ok.sum() < min_sites:
            continue
        counts = np.stack([xp[n, p : p + w] for n, p in zip(n_idx[ok], p_idx[ok])]).sum(axis=0) + 0.1
        out.append({"name": f"filter_{f}", "ppm": counts / counts.sum(axis=1, keepdims=True), "n_sites": int(ok.sum())})
    return out


def jaspar_motifs(release: str = JASPAR_RELEASE, collection: str = "CORE", tax_group: str = "vertebrates") -> dict[str, np.ndarray]:
    """JASPAR PPMs from pyjaspar's bundled database: ``{"<matrix id> <name>": (L, 4) PPM}``.

    Parameters
    ----------
    release
        A release shipped with pyjaspar (``JASPAR2024``, ``JASPAR2026``, ...).
    """
    from pyjaspar import jaspardb

    db = jaspardb(release=release)
    motifs = db.fetch_motifs(collection=collection, tax_group=[tax_group], all_versions=False)
    out = {}
    for m in motifs:
        counts = np.array([m.counts[b] for b in "ACGT"], float).T + 0.01
        out[f"{m.matrix_id} {m.name}"] = counts / counts.sum(axis=1, keepdims=True)
    return out


def match_motifs(queries: dict[str, np.ndarray], targets: dict[str, np.ndarray], *, q_threshold: float = 0.05, top: int = 5) -> pd.DataFrame:
    """Tomtom (memelite) of every query PPM against every target PPM.

    Parameters
    ----------
    queries, targets
        ``{name: (L, 4) PPM}``.
    q_threshold
        Matches with ``q_value < q_threshold`` are ``significant``.
    top
        Matches kept per query (by p-value).

    Returns
    -------
    pd.DataFrame
        ``query, target, p_value, q_value, offset, overlap, strand, significant, rank``;
        sorted by query then p-value.
    """
    from memelite.tomtom import tomtom
    from scipy.stats import false_discovery_control

    qn, tn = list(queries), list(targets)
    if not qn:
        return pd.DataFrame(columns=["query", "target", "p_value", "q_value", "offset", "overlap", "strand", "significant", "rank"])
    Q = [np.ascontiguousarray(queries[k].T, dtype=np.float64) for k in qn]
    T = [np.ascontiguousarray(targets[k].T, dtype=np.float64) for k in tn]
    p, _, offsets, overlaps, strands = tomtom(Q, T, n_jobs=1)[:5]
    rows = []
    for i, q in enumerate(qn):
        pi = np.clip(np.nan_to_num(p[i], nan=1.0), 0, 1)
        qv = false_discovery_control(pi, method="bh")
        for r, j in enumerate(np.argsort(pi, kind="stable")[:top]):
            rows.append({"query": q, "target": tn[j], "p_value": float(pi[j]), "q_value": float(qv[j]),
                         "offset": int(offsets[i, j]), "overlap": int(overlaps[i, j]),
                         "strand": "-" if strands[i, j] else "+", "significant": bool(qv[j] < q_threshold), "rank": r + 1})
    return pd.DataFrame(rows)


def write_meme(path: str, motifs: dict[str, np.ndarray]) -> None:
    """Write PPMs ``{name: (L, 4)}`` as a MEME-format file (memelite ``write_meme``), atomically."""
    from memelite.io import write_meme as _write

    from .. import storage

    safe = {name.replace(" ", "_"): np.asarray(ppm, float).T for name, ppm in motifs.items()}
    with storage.atomic_path(path) as tmp:
        _write(tmp, safe)
