"""Regional sequence context of CpGs: composition at scales a 400 bp window cannot see.

The second input of context models (``context_cnn``, :mod:`methray.models.context_cnn`):
for each CpG, the composition of the reference in windows of :data:`SCALES` (1 kb to 1 Mb)
centred on its C. Methylation follows regional context that a local window misses: partially
methylated domains (PMDs) of hundreds of kb in IMR90 (Lister et al. 2009, Nature 462:315),
which are GC- and CpG-poor, lose methylation in their CpG-poor (WCGW) parts first (Zhou et
al. 2018, Nature Genetics 50:591). The ``composition_gbm`` baseline (:mod:`methray.composition`)
showed these features to matter; here they are cheap per batch for random sites over a
whole genome.

How it is computed: once per node and contig, the counts of called (non-N) bases, C, G and
CpG dinucleotides (counted in the bin of their C) in bins of :data:`BIN_BP` bp are summed
cumulatively and cached beside the contig codes in the genome cache
(:meth:`methray.genome.Reference.derived`: ``<contig>.bins100-v1.npy``, ``(n_bins + 1, 4)
int32``, 16 bytes per 100 bp: ~0.5 GB for hg38, memory-mapped and shared by every process of
a node). A batch's features are then two fancy-indexed lookups per scale, whatever the
scale: ``(B,)`` positions -> ``(B, F) float32``, memory bounded by the batch.

Windows are whole bins: for scale ``w`` the bins ``[k - h, k + h + 1)`` with ``k = pos //
BIN_BP`` (the C's bin) and ``h = w // (2 * BIN_BP)``, i.e. ``w + BIN_BP`` bp centred on the
C's bin (to within one bin), clipped to the contig. Features per scale (``F = 4 *
len(SCALES)``), normalised to about unit scale:

- ``gc_<w>``: ``(GC fraction - 0.42) / 0.1`` (0.42: the human genome's mean);
- ``log2_cpg_oe_<w>``: ``log2`` of CpG observed/expected (:func:`methray.composition.ratios`)
  ``+ 1.5`` (genome-wide o/e is about 0.25, CpG islands about 0.6-1);
- ``log2_cpg_<w>``: ``log2(1 + CpGs per 100 called bp)``;
- ``n_<w>``: the fraction of the window that is N (or past the contig end).

Windows with no called base (or no C or G, for o/e) get 0 in the first three; o/e is
floored at 1/32.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .composition import ratios
from .encoding import N_CODE
from .genome import open_reference

BIN_BP = 100
"""Bin width of the cached counts, bp."""
SCALES = (1_000, 5_000, 20_000, 100_000, 1_000_000)
"""Window widths (bp) of the context features."""
COUNTS = ("called", "c", "g", "cpg")
"""Columns of the binned counts."""
CACHE_KIND = "bins100-v1"
_CHUNK_BINS = 1 << 17  # bins per step while building (13 Mb): bounds the builder's memory


def feature_names() -> list[str]:
    """Names of the ``F`` columns of :func:`context_features`, in order."""
    return [f"{f}_{w}" for w in SCALES for f in ("gc", "log2_cpg_oe", "log2_cpg", "n")]


N_FEATURES = len(SCALES) * 4
"""``F``: number of context features."""


def build_bin_sums(codes: np.ndarray, out_path) -> None:
    """Write the cumulative binned counts of one contig to ``out_path`` (``.npy``).

    Parameters
    ----------
    codes
        The contig's base codes, unpadded, ``(S,) uint8`` (:meth:`methray.genome.Reference.contig_codes`).
    out_path
        Target ``.npy`` file: ``(ceil(S / BIN_BP) + 1, 4) int32``; row ``i`` holds the
        counts of :data:`COUNTS` in bases ``[0, i * BIN_BP)`` (a CpG counts in the bin of its C).

    The contig is read in chunks of bins, so memory is bounded by a chunk, not the contig.
    """
    size = len(codes)
    n_bins = -(-size // BIN_BP)
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.int32, shape=(n_bins + 1, len(COUNTS)))
    out[0] = 0
    total = np.zeros(len(COUNTS), np.int64)
    for b0 in range(0, n_bins, _CHUNK_BINS):
        b1 = min(n_bins, b0 + _CHUNK_BINS)
        lo, hi = b0 * BIN_BP, min(size, b1 * BIN_BP)
        seq = np.asarray(codes[lo : min(size, hi + 1)])  # one base more: a CpG whose G starts the next chunk
        nxt = np.append(seq[1:], N_CODE) if hi + 1 > size else seq[1:]
        seq = seq[: hi - lo]
        nxt = nxt[: hi - lo]
        pad = (b1 - b0) * BIN_BP - len(seq)  # the last bin of the contig may be partial
        masks = np.stack([seq != N_CODE, seq == 1, seq == 2, (seq == 1) & (nxt == 2)], axis=1)
        masks = np.concatenate([masks, np.zeros((pad, len(COUNTS)), bool)])
        per_bin = masks.reshape(b1 - b0, BIN_BP, len(COUNTS)).sum(axis=1, dtype=np.int64)
        out[b0 + 1 : b1 + 1] = np.cumsum(per_bin, axis=0) + total
        total += per_bin.sum(axis=0)
    out.flush()
    del out


def bin_sums(reference: str, chrom: str) -> np.ndarray:
    """The cumulative binned counts of a contig (see :func:`build_bin_sums`), memory-mapped.

    Built on the node's first use and cached in the genome cache
    (:meth:`methray.genome.Reference.derived`).

    Returns
    -------
    np.ndarray
        ``(n_bins + 1, 4) int32``, read-only.
    """
    return open_reference(reference).derived(chrom, CACHE_KIND, build_bin_sums)


def window_bins(positions: np.ndarray, scale: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """First and end bin of the ``scale`` window of each position, clipped: ``(lo, hi)``, ``(N,) int64``."""
    k = np.asarray(positions, dtype=np.int64) // BIN_BP
    h = scale // (2 * BIN_BP)
    return np.clip(k - h, 0, n_bins), np.clip(k + h + 1, 0, n_bins)


def contig_features(sums: np.ndarray, size: int, positions: np.ndarray) -> np.ndarray:
    """Context features of CpGs on one contig from its cumulative binned counts.

    Parameters
    ----------
    sums
        :func:`bin_sums` of the contig, ``(n_bins + 1, 4) int32``.
    size
        Contig length, bp.
    positions
        0-based C positions, ``(N,)`` integer, in ``[0, size)``.

    Returns
    -------
    np.ndarray
        ``(N, F) float32``, columns :func:`feature_names`.
    """
    n_bins = len(sums) - 1
    out = np.empty((len(positions), N_FEATURES), np.float32)
    for i, w in enumerate(SCALES):
        lo, hi = window_bins(positions, w, n_bins)
        n = (sums[hi].astype(np.int64) - sums[lo]).T  # (4, N): called, c, g, cpg
        span = np.minimum(hi * BIN_BP, size) - lo * BIN_BP
        gc, oe, density = ratios(*n)
        cols = ((gc - 0.42) / 0.1, np.log2(np.maximum(oe, 1 / 32)) + 1.5, np.log2(1.0 + density))
        out[:, 4 * i : 4 * i + 3] = np.nan_to_num(np.stack(cols, axis=1), nan=0.0)
        out[:, 4 * i + 3] = 1.0 - n[0] / np.maximum(span, 1)
    return out


def context_features(reference: str, chroms: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Context features of a batch of CpGs (any contigs, any order).

    Parameters
    ----------
    reference
        Indexed FASTA (local or ``s3://``).
    chroms
        ``(B,)`` contig names.
    positions
        ``(B,)`` integer, 0-based C positions.

    Returns
    -------
    np.ndarray
        ``(B, F) float32``, columns :func:`feature_names`, rows in input order.
    """
    ref = open_reference(reference)
    pos = np.asarray(positions, dtype=np.int64)
    group, names = pd.factorize(np.asarray(chroms))
    out = np.empty((len(pos), N_FEATURES), np.float32)
    for i, chrom in enumerate(names):
        sel = group == i
        out[sel] = contig_features(bin_sums(reference, str(chrom)), ref.sizes[str(chrom)], pos[sel])
    return out


def model_inputs(model: str, reference: str, chroms: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, ...]:
    """What a model takes beside its window, for a batch of CpGs: the one place that decides it.

    Training (:func:`methray.train._batches`) and scoring (:class:`methray.predictor.Predictor`)
    call ``model(x, *model_inputs(...))``.

    Parameters
    ----------
    model
        Registry name.
    reference
        Indexed FASTA (local or ``s3://``).
    chroms, positions
        ``(B,)`` contig names and 0-based C positions.

    Returns
    -------
    tuple
        ``()`` for window-only models; ``(context,)`` with ``context`` ``(B, F) float32``
        (:func:`context_features`) for context models (``ModelInfo.context_features > 0``).
    """
    from . import models

    if not models.get(model).context_features:
        return ()
    return (context_features(reference, chroms, positions),)


def refuse_context(model: str, where: str, job: str) -> None:
    """Raise :class:`MethrayError` if ``model`` needs context features, which ``job`` does not give.

    Jobs that edit or attribute the window alone (variant effects, interpretation) refuse
    context models in the driver, with one line.
    """
    from . import models
    from .errors import MethrayError

    if models.get(model).context_features:
        raise MethrayError(f"{where}: {model} also reads regional context features; {job} supports window-only models (mrcnn, cnn_baseline, ...)")
