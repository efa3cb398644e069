"""Sequence windows around CpGs and their one-hot encoding, vectorised with numpy.

Conventions
-----------
- Positions are 0-based; a CpG's position is that of the C on the + strand (the G is at
  ``pos + 1``).
- Bases are stored as *codes* (``uint8``): A=0, C=1, G=2, T=3, anything else (N, IUPAC
  ambiguity codes, gaps) = 4. Lower case (soft-masked repeats) maps like upper case.
- One-hot columns are in A, C, G, T order; code 4 becomes an all-zero row.
- Windows that run past a contig end are padded with N (all-zero rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

N_CODE = 4
"""Code of N and of every non-ACGT character."""

MAX_FLANK = 8192
"""Contigs are padded with this many N codes on each side, so any window up to
``2 * MAX_FLANK`` bp can be gathered without bounds checks."""

BASE_CODES = np.full(256, N_CODE, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    BASE_CODES[ord(_b)] = _i
    BASE_CODES[ord(_b.lower())] = _i

ONE_HOT = np.zeros((5, 4), dtype=np.uint8)
ONE_HOT[np.arange(4), np.arange(4)] = 1

_ONE_HOT_WORDS = ONE_HOT.view(np.uint32).ravel()
"""Each one-hot row of :data:`ONE_HOT` as one 4-byte word: a one-element lookup per base
is ~6x faster than indexing the ``(5, 4)`` table (measured in ``bench/``)."""

COMPLEMENT_CODES = np.array([3, 2, 1, 0, N_CODE], dtype=np.uint8)
"""Code -> code of the complementary base (A<->T, C<->G, N->N)."""


@dataclass(frozen=True)
class WindowSpec:
    """Which bases around a CpG form a model's input window.

    Parameters
    ----------
    length
        Number of bases in the window (the model's input length L).
    exclude_cpg
        If True (MRCNN, Tian et al. 2019, Methods), the window is the ``length // 2`` bases
        upstream of the C plus the ``length - length // 2`` bases downstream of the G: the
        CpG's own two bases are left out. If False, the window is centred on the C:
        ``[pos - length // 2, pos - length // 2 + length)``, so the C sits at index
        ``length // 2``.
    """

    length: int
    exclude_cpg: bool = False

    def __post_init__(self):
        if self.length < 1 or self.length > 2 * MAX_FLANK:
            raise ValueError(f"window length must be in 1..{2 * MAX_FLANK}, got {self.length}")

    def offsets(self) -> np.ndarray:
        """Offsets of the window's bases relative to the C, ``(length,) int64``."""
        up = self.length // 2
        if self.exclude_cpg:
            return np.concatenate([np.arange(-up, 0), np.arange(2, 2 + self.length - up)])
        return np.arange(-up, self.length - up)


def sequence_to_codes(seq: str | bytes) -> np.ndarray:
    """Map a sequence to base codes.

    Parameters
    ----------
    seq
        DNA sequence, any case.

    Returns
    -------
    np.ndarray
        ``(len(seq),) uint8`` codes A=0, C=1, G=2, T=3, other=4.
    """
    raw = seq.encode("ascii") if isinstance(seq, str) else bytes(seq)
    return BASE_CODES[np.frombuffer(raw, dtype=np.uint8)]


def pad_codes(codes: np.ndarray) -> np.ndarray:
    """Pad a contig's codes with :data:`MAX_FLANK` N codes on each side, ``(len + 2*MAX_FLANK,) uint8``."""
    return np.pad(codes, MAX_FLANK, constant_values=N_CODE)


def gather_windows(padded_codes: np.ndarray, positions: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Gather the windows of many CpGs on one contig in a single numpy indexing step.

    Parameters
    ----------
    padded_codes
        The contig's codes from :func:`pad_codes`, ``(contig_len + 2*MAX_FLANK,) uint8``.
    positions
        0-based positions of the CpGs' C, ``(N,)`` integer, each in ``[0, contig_len)``.
    spec
        The window to take.

    Returns
    -------
    np.ndarray
        ``(N, spec.length) uint8`` base codes; bases past a contig end are N (4).
    """
    pos = np.asarray(positions, dtype=np.int64)
    offsets = spec.offsets()
    lo = int(offsets[0])
    # Copy each window's whole span as one contiguous row (much faster than an (N, L) index
    # matrix), then keep the offsets' contiguous runs (two runs when the CpG is excluded).
    rows = sliding_window_view(padded_codes, int(offsets[-1]) - lo + 1)[pos + MAX_FLANK + lo]
    keep = offsets - lo
    runs = np.split(keep, np.flatnonzero(np.diff(keep) != 1) + 1)
    if len(runs) == 1:
        return rows
    return np.concatenate([rows[:, r[0] : r[-1] + 1] for r in runs], axis=1)


def one_hot(codes: np.ndarray) -> np.ndarray:
    """One-hot encode base codes.

    Parameters
    ----------
    codes
        ``(..., L) uint8`` codes from :func:`sequence_to_codes` / :func:`gather_windows`.

    Returns
    -------
    np.ndarray
        ``(..., L, 4) uint8`` with columns A, C, G, T; N rows are all zero. Models take
        ``float32``: convert with ``.astype(np.float32)`` (or ``tensor.float()``) at the
        consumer, which keeps batches 4x smaller in transit.
    """
    codes = np.asarray(codes)
    return _ONE_HOT_WORDS[codes].view(np.uint8).reshape(*codes.shape, 4)


def encode_sequence(seq: str) -> np.ndarray:
    """One-hot encode one sequence, ``(len(seq), 4) float32`` (A, C, G, T; N = zeros)."""
    return one_hot(sequence_to_codes(seq)).astype(np.float32)


def reverse_complement_codes(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of code arrays along the last axis, same shape and dtype."""
    return COMPLEMENT_CODES[codes[..., ::-1]]


def window_content(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Sequence-content features of windows (used by the CpG-density baseline).

    Parameters
    ----------
    codes
        ``(N, L) uint8`` window codes.

    Returns
    -------
    dict
        ``cpg_count`` ``(N,) float32``: number of CG dinucleotides inside the window;
        ``gc_fraction`` ``(N,) float32``: (C + G) / non-N bases (0 when all N);
        ``n_fraction`` ``(N,) float32``: N bases / L.
    """
    is_c, is_g, is_n = codes == 1, codes == 2, codes == N_CODE
    cpg = (is_c[:, :-1] & is_g[:, 1:]).sum(axis=1)
    called = codes.shape[1] - is_n.sum(axis=1)
    gc = (is_c | is_g).sum(axis=1) / np.maximum(called, 1)
    return {
        "cpg_count": cpg.astype(np.float32),
        "gc_fraction": gc.astype(np.float32),
        "n_fraction": (is_n.sum(axis=1) / codes.shape[1]).astype(np.float32),
    }


def n_runs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of N (code 4) in a code array as half-open ``(starts, ends)``, ``int64``.

    Counting N bases inside many windows from the runs (with
    :func:`methray.io.bed.covered_bp`) needs memory proportional to the number of runs, not
    an integer per base (a per-base cumulative count of chr1 would take 1-2 GB).
    """
    edges = np.diff(np.asarray(codes) == N_CODE, prepend=False, append=False).astype(np.int8)
    changes = np.flatnonzero(edges)
    return changes[0::2].astype(np.int64), changes[1::2].astype(np.int64)
