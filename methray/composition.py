"""Sequence-composition features of CpGs, computed from the reference alone.

The features of the ``composition_gbm`` baseline (:mod:`methray.baseline`): what the
sequence around a CpG says about its methylation without any learned sequence model.

- ``gc_<w>``, ``cpg_oe_<w>``, ``cpg_<w>`` for each window width ``w`` of :data:`SCALES`
  (100 bp to 100 kb, centred on the C: ``[pos - w // 2, pos - w // 2 + w)``, clipped to the
  contig): GC fraction of the called (non-N) bases, CpG observed/expected
  ``n_CpG * n_called / (n_C * n_G)`` (Gardiner-Garden & Frommer 1987, J Mol Biol 196:261) and
  CpGs per 100 called bases. NaN where the window has no called base (or no C / G for
  observed/expected); the tree model handles NaN.
- ``k_<kmer>``: counts of every k-mer, k = 1..:data:`MAX_K`, in the 400 bp window centred on
  the C (k-mers containing N are not counted).
- ``flank_m1_<b>``, ``flank_p2_<b>``: one-hot of the bases at ``pos - 1`` and ``pos + 2``;
  ``flank_w``: how many of the two are A/T (0 = SCGS, 1 = mixed, 2 = WCGW; NaN when one is N).
  WCGW CpGs lose methylation first in partially methylated domains (Zhou et al. 2018,
  Nature Genetics 50:591).
- ``in_cpg_island`` (0/1) and ``island_distance``: bp from the C to the nearest CpG island
  (0 inside one; NaN when the contig has none).

Everything is vectorised over the sites of a contig: window counts are differences of a
cumulative sum over the cached contig codes (:meth:`methray.genome.Reference.contig_codes`),
one ``int32`` array of the contig's length at a time; k-mers are counted with ``bincount`` on
gathered windows in chunks of sites.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from .encoding import MAX_FLANK, N_CODE, WindowSpec, gather_windows
from .genome import open_reference
from .io.bed import load_islands

SCALES = (100, 400, 1_000, 5_000, 20_000, 100_000)
"""Window widths (bp) of the GC / CpG features."""
KMER_WINDOW = 400
MAX_K = 4
_CHUNK = 8192  # sites per k-mer chunk: bounds the (chunk, 400) int64 temporaries


def kmer_names(max_k: int = MAX_K) -> list[str]:
    """Names of the k-mer columns, ``k_A`` ... ``k_TTTT``, in the order of :func:`kmer_counts`."""
    return [f"k_{''.join(t)}" for k in range(1, max_k + 1) for t in itertools.product("ACGT", repeat=k)]


def feature_names() -> list[str]:
    """All feature columns of :func:`composition_features`, in order."""
    scales = [f"{f}_{w}" for w in SCALES for f in ("gc", "cpg_oe", "cpg")]
    flanks = [f"flank_{side}_{b}" for side in ("m1", "p2") for b in "ACGT"]
    return scales + kmer_names() + flanks + ["flank_w", "in_cpg_island", "island_distance"]


def window_counts(codes: np.ndarray, positions: np.ndarray, widths: tuple[int, ...] = SCALES) -> dict[int, dict[str, np.ndarray]]:
    """Base and CpG counts in windows of several widths centred on each C.

    Parameters
    ----------
    codes
        One contig's base codes without padding, ``(S,) uint8``.
    positions
        0-based C positions, ``(N,)`` integer.
    widths
        Window widths in bp; a window is ``[pos - w // 2, pos - w // 2 + w)``, clipped to ``[0, S)``.

    Returns
    -------
    dict
        Per width: ``called``, ``c``, ``g``, ``cpg`` (CG dinucleotides wholly inside the
        window), each ``(N,) int64``.
    """
    pos = np.asarray(positions, dtype=np.int64)
    bounds = {w: (np.clip(pos - w // 2, 0, len(codes)), np.clip(pos - w // 2 + w, 0, len(codes))) for w in widths}
    masks = {
        "called": lambda: codes != N_CODE,
        "c": lambda: codes == 1,
        "g": lambda: codes == 2,
        "cpg": lambda: np.concatenate([(codes[:-1] == 1) & (codes[1:] == 2), [False]]),
    }
    out: dict[int, dict[str, np.ndarray]] = {w: {} for w in widths}
    for name, mask in masks.items():
        # One prefix sum at a time, sampled at every width: memory is one int32 per base.
        cum = np.concatenate([[0], np.cumsum(mask(), dtype=np.int32)])
        for w, (lo, hi) in bounds.items():
            # a CpG counts when both its bases are inside: it starts in [lo, hi - 1)
            end = np.maximum(hi - 1, lo) if name == "cpg" else hi
            out[w][name] = (cum[end] - cum[lo]).astype(np.int64)
        del cum
    return out


def ratios(called: np.ndarray, c: np.ndarray, g: np.ndarray, cpg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GC fraction, CpG observed/expected and CpGs per 100 bp from a window's counts.

    Parameters
    ----------
    called, c, g, cpg
        Counts in each window, ``(N,)`` integer: called (non-N) bases, C, G, CpG dinucleotides.

    Returns
    -------
    tuple of np.ndarray
        ``gc``, ``cpg_oe`` (``n_CpG * n_called / (n_C * n_G)``, Gardiner-Garden & Frommer
        1987) and ``cpg`` (per 100 called bases), each ``(N,) float64``; NaN where the window
        has no called base (``cpg_oe``: no C or no G).
    """
    called = np.asarray(called, dtype=np.float64)
    c, g, cpg = (np.asarray(a, dtype=np.float64) for a in (c, g, cpg))
    with np.errstate(divide="ignore", invalid="ignore"):
        gc = np.where(called > 0, (c + g) / called, np.nan)
        oe = np.where(c * g > 0, cpg * called / (c * g), np.nan)
        density = np.where(called > 0, 100.0 * cpg / called, np.nan)
    return gc, oe, density


def kmer_counts(windows: np.ndarray, max_k: int = MAX_K) -> np.ndarray:
    """Counts of every k-mer (k = 1..``max_k``) in each window.

    Parameters
    ----------
    windows
        ``(N, L) uint8`` base codes.

    Returns
    -------
    np.ndarray
        ``(N, 4 + 16 + ... + 4**max_k) float32``, columns as :func:`kmer_names` (k-mers
        with an N are not counted).
    """
    n, length = windows.shape
    blocks = []
    w = windows.astype(np.int64)
    for k in range(1, max_k + 1):
        span = length - k + 1
        index = np.zeros((n, span), np.int64)
        has_n = np.zeros((n, span), bool)
        for t in range(k):
            col = w[:, t : t + span]
            index = index * 4 + np.minimum(col, 3)
            has_n |= col == N_CODE
        flat = (np.arange(n, dtype=np.int64)[:, None] * 4**k + index)[~has_n]
        blocks.append(np.bincount(flat, minlength=n * 4**k).reshape(n, 4**k))
    return np.concatenate(blocks, axis=1).astype(np.float32)


def island_distance(starts: np.ndarray, ends: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Distance (bp) from each position to the nearest interval of sorted disjoint ``[starts, ends)``.

    0 inside an interval; else the distance to the nearest interval base. ``(N,) float64``,
    NaN when there are no intervals.
    """
    pos = np.asarray(positions, dtype=np.int64)
    if len(starts) == 0:
        return np.full(len(pos), np.nan)
    i = np.searchsorted(starts, pos, side="right") - 1  # last interval starting at or before pos
    left = np.where(i >= 0, pos - (ends[np.maximum(i, 0)] - 1), np.iinfo(np.int64).max)
    nxt = np.minimum(i + 1, len(starts) - 1)
    right = np.where(i + 1 < len(starts), starts[nxt] - pos, np.iinfo(np.int64).max)
    return np.maximum(np.minimum(left, right), 0).astype(np.float64)


def composition_features(sites: pd.DataFrame, reference: str, cpg_islands: str | None = None) -> pd.DataFrame:
    """The composition features of each CpG (see the module docstring).

    Parameters
    ----------
    sites
        ``chrom`` (str) and ``pos`` (int, 0-based C of a + strand CpG).
    reference
        Indexed FASTA (local or ``s3://``).
    cpg_islands
        CpG-island BED (0-based half-open); ``None``: island features are 0 / NaN.

    Returns
    -------
    pd.DataFrame
        ``(N, len(feature_names()))`` float32, columns :func:`feature_names`, rows in the
        order of ``sites`` (index 0..N-1).
    """
    ref = open_reference(reference)
    islands = load_islands(cpg_islands)
    out = np.full((len(sites), len(feature_names())), np.nan, dtype=np.float32)
    chroms = sites["chrom"].to_numpy().astype(str)
    positions = sites["pos"].to_numpy(np.int64)
    for chrom in pd.unique(chroms):
        sel = np.flatnonzero(chroms == chrom)
        out[sel] = _contig_features(ref, str(chrom), positions[sel], islands)
    return pd.DataFrame(out, columns=feature_names())


def _contig_features(ref, chrom: str, pos: np.ndarray, islands) -> np.ndarray:
    codes = ref.contig_codes(chrom)
    cols = []
    for w, n in window_counts(codes, pos, SCALES).items():
        cols += list(ratios(n["called"], n["c"], n["g"], n["cpg"]))
    scale_block = np.stack(cols, axis=1)
    padded = ref.codes(chrom)
    spec = WindowSpec(KMER_WINDOW)
    kmers = np.concatenate([kmer_counts(gather_windows(padded, pos[i : i + _CHUNK], spec)) for i in range(0, len(pos), _CHUNK)] or [np.zeros((0, len(kmer_names())), np.float32)])
    m1, p2 = padded[pos + MAX_FLANK - 1], padded[pos + MAX_FLANK + 2]
    flanks = np.concatenate([(m1[:, None] == np.arange(4)), (p2[:, None] == np.arange(4))], axis=1).astype(np.float32)
    is_w = lambda b: np.isin(b, (0, 3))  # noqa: E731  A or T
    flank_w = np.where((m1 == N_CODE) | (p2 == N_CODE), np.nan, is_w(m1).astype(float) + is_w(p2))
    starts, ends = islands.intervals(chrom)
    dist = island_distance(starts, ends, pos)
    inside = (dist == 0).astype(np.float32)
    return np.concatenate([scale_block, kmers, flanks, flank_w[:, None], inside[:, None], dist[:, None]], axis=1)
