"""Which CpGs a variant can change, and the predictor that scores reference vs alternate windows.

For an SNV at 0-based position ``p`` and a reference CpG whose C is at ``c`` (G at ``c + 1``),
``d = p - c`` is the variant's offset from the C (``distance`` in the outputs: negative =
5' of the C on the + strand). A *pair* (variant, CpG) is one of:

``window``
    ``d`` is one of the model's window offsets (:meth:`methray.encoding.WindowSpec.offsets`)
    and the variant is not on the CpG itself: the CpG is predicted with the reference window
    and with the window carrying the ALT base; ``delta = beta_alt - beta_ref``.
``destroyed``
    ``d`` is 0 or 1: the variant changes the CpG's C or G (C>T at the C and G>A at the G are
    the common cases; any change of the C or G counts). The site no longer exists on the ALT
    allele: ``beta_alt`` and ``delta`` are NaN (undefined), ``beta_ref`` is predicted.
``created``
    the ALT base makes a new CG with a reference neighbour (ALT C before a reference G, the
    new CpG at ``p``; ALT G after a reference C, the new CpG at ``p - 1``). The site does not
    exist on the reference: ``beta_ref`` and ``delta`` are NaN, ``beta_alt`` is predicted
    from the ALT sequence.

Each variant is applied alone to the reference (neighbouring variants are not phased in).
A variant whose position lies outside a CpG's window leaves the window unchanged, so it
yields no pair and its per-variant summary has ``n_cpgs == 0`` and ``max_abs_delta == 0``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from ..encoding import BASE_CODES, WindowSpec, gather_windows, one_hot
from ..genome import open_reference
from ..predictor import CheckpointPredictor

EFFECTS = ("window", "destroyed", "created")


def span(specs: list[WindowSpec]) -> tuple[int, int]:
    """Smallest and largest offset from the C over the windows of all models (both inclusive)."""
    offs = [s.offsets() for s in specs]
    return int(min(o[0] for o in offs)), int(max(o[-1] for o in offs))


def cpg_positions(contig_codes: np.ndarray, start: int, end: int) -> np.ndarray:
    """0-based C positions of the reference CpGs with ``start <= c < end``, ``(K,) int64``, sorted."""
    lo, hi = max(0, start), min(len(contig_codes) - 1, end)
    if hi <= lo:
        return np.zeros(0, np.int64)
    seg = contig_codes[lo : hi + 1]
    return np.flatnonzero((seg[:-1] == 1) & (seg[1:] == 2)).astype(np.int64) + lo


def enumerate_pairs(pos: np.ndarray, alt: np.ndarray, contig_codes: np.ndarray, specs: list[WindowSpec]) -> pd.DataFrame:
    """Every (SNV, CpG) pair any of the models can see (see the module docstring).

    Parameters
    ----------
    pos
        0-based SNV positions, ``(V,) int64``.
    alt
        ALT bases as codes (A=0, C=1, G=2, T=3), ``(V,) uint8``.
    contig_codes
        The reference contig as codes, ``(size,) uint8``.
    specs
        The models' windows; pairs are enumerated over their union span.

    Returns
    -------
    pd.DataFrame
        ``variant`` (int64 index into ``pos``), ``cpg_pos`` (int64, 0-based C), ``effect``
        (one of :data:`EFFECTS`), sorted by variant then CpG position. Which model sees a
        ``window`` pair is decided per model by :func:`in_window`.
    """
    pos = np.asarray(pos, np.int64)
    alt = np.asarray(alt, np.uint8)
    lo_off, hi_off = span(specs)
    if len(pos) == 0:
        return pd.DataFrame({"variant": np.zeros(0, np.int64), "cpg_pos": np.zeros(0, np.int64), "effect": []})
    cpgs = cpg_positions(contig_codes, int(pos.min()) - hi_off, int(pos.max()) - lo_off + 1)
    # CpGs c with lo_off <= p - c <= hi_off, i.e. c in [p - hi_off, p - lo_off].
    first = np.searchsorted(cpgs, pos - hi_off, side="left")
    last = np.searchsorted(cpgs, pos - lo_off, side="right")
    counts = last - first
    variant = np.repeat(np.arange(len(pos)), counts)
    idx = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    cpg = cpgs[idx]
    d = pos[variant] - cpg
    effect = np.where((d == 0) | (d == 1), "destroyed", "window").astype(object)
    parts = [pd.DataFrame({"variant": variant, "cpg_pos": cpg, "effect": effect})]
    # New CpGs made by the ALT base with a reference neighbour.
    size = len(contig_codes)
    nxt = np.where(pos + 1 < size, contig_codes[np.minimum(pos + 1, size - 1)], 4)
    prv = np.where(pos > 0, contig_codes[np.maximum(pos - 1, 0)], 4)
    new_c = np.flatnonzero((alt == 1) & (nxt == 2))
    new_g = np.flatnonzero((alt == 2) & (prv == 1))
    parts.append(pd.DataFrame({"variant": new_c, "cpg_pos": pos[new_c], "effect": "created"}))
    parts.append(pd.DataFrame({"variant": new_g, "cpg_pos": pos[new_g] - 1, "effect": "created"}))
    out = pd.concat(parts, ignore_index=True)
    out["variant"] = out["variant"].astype(np.int64)
    out["cpg_pos"] = out["cpg_pos"].astype(np.int64)
    return out.sort_values(["variant", "cpg_pos", "effect"], kind="stable", ignore_index=True)


def in_window(distance: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Whether offsets ``distance = p - c`` fall inside ``spec``'s window, ``(P,) bool``."""
    return np.isin(np.asarray(distance, np.int64), spec.offsets())


def alt_windows(ref_codes: np.ndarray, distance: np.ndarray, alt: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Windows with the ALT base put in, ``(P, L) uint8`` (rows whose offset is outside stay as is).

    Parameters
    ----------
    ref_codes
        Reference windows of the pairs' CpGs, ``(P, L) uint8``.
    distance
        ``p - c`` per pair, ``(P,) int64``.
    alt
        ALT base codes, ``(P,) uint8``.
    """
    offsets = spec.offsets()
    out = ref_codes.copy()
    col = np.searchsorted(offsets, distance)
    inside = (col < len(offsets)) & (offsets[np.minimum(col, len(offsets) - 1)] == distance)
    rows = np.flatnonzero(inside)
    out[rows, col[rows]] = alt[rows]
    return out


class VariantPredictor:
    """Ray Data callable class: predicted beta of CpGs with the reference and the ALT allele.

    One :class:`methray.predictor.CheckpointPredictor` per checkpoint: ``__init__`` loads
    every checkpoint once per actor; ``__call__`` builds each pair's reference and ALT windows
    from the cached contig (nothing one-hot travels through the object store) and runs the
    models in sub-batches of ``batch_size`` windows.

    Parameters
    ----------
    checkpoints
        Model label -> checkpoint directory.
    reference
        FASTA path.
    batch_size
        Windows per forward pass.
    threads
        torch CPU threads.

    ``__call__`` takes pair rows: ``chrom`` (str), ``pos`` (int64, variant, 0-based),
    ``alt`` (str), ``cpg_pos`` (int64; -1 = a variant row without pair), ``effect`` (str);
    returns the batch plus, per label, ``beta_ref.<label>``, ``beta_alt.<label>``
    (``(B,) float32``, NaN where undefined) and ``seen.<label>`` (bool: the pair is a row of
    this model, i.e. the CpG's own bases or the variant inside the model's window).
    """

    def __init__(self, checkpoints: dict[str, str], reference: str, batch_size: int = 1024, threads: int = 1):
        self.predictors = {label: CheckpointPredictor(path, reference, threads) for label, path in checkpoints.items()}
        self.reference = reference
        self.batch_size = int(batch_size)

    def _predict(self, predictor: CheckpointPredictor, codes: np.ndarray) -> np.ndarray:
        out = np.empty(len(codes), np.float32)
        for i in range(0, len(codes), self.batch_size):
            out[i : i + self.batch_size] = predictor.predict(one_hot(codes[i : i + self.batch_size]))[:, 0]
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["cpg_pos"])
        out = {k: np.asarray(v) for k, v in batch.items()}
        cpg = np.asarray(batch["cpg_pos"], np.int64)
        pos = np.asarray(batch["pos"], np.int64)
        effect = np.asarray(batch["effect"]).astype(str)
        alt = BASE_CODES[np.array([ord(a[0]) if len(a) else ord("N") for a in np.asarray(batch["alt"]).astype(str)], np.uint8)]
        chrom = np.asarray(batch["chrom"]).astype(str)
        ref = open_reference(self.reference)
        for label, predictor in self.predictors.items():
            spec = predictor.meta.window
            beta_ref = np.full(n, np.nan, np.float32)
            beta_alt = np.full(n, np.nan, np.float32)
            seen = (cpg >= 0) & ((effect != "window") | in_window(pos - cpg, spec))
            for c in np.unique(chrom[seen]):
                rows = np.flatnonzero(seen & (chrom == c))
                padded = ref.codes(c)
                # One reference prediction per distinct CpG, shared by its pairs.
                sites, inverse = np.unique(cpg[rows], return_inverse=True)
                site_beta = self._predict(predictor, gather_windows(padded, sites, spec))
                ref_rows = rows[effect[rows] != "created"]  # a created CpG has no reference site
                beta_ref[ref_rows] = site_beta[inverse[effect[rows] != "created"]]
                alt_rows = rows[effect[rows] != "destroyed"]  # a destroyed CpG has no ALT site
                if len(alt_rows):
                    wins = gather_windows(padded, cpg[alt_rows], spec)
                    alt_codes = alt_windows(wins, pos[alt_rows] - cpg[alt_rows], alt[alt_rows], spec)
                    beta_alt[alt_rows] = self._predict(predictor, alt_codes)
            out[f"beta_ref.{label}"] = beta_ref
            out[f"beta_alt.{label}"] = beta_alt
            out[f"seen.{label}"] = seen
        return out
