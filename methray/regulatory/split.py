"""The contiguous-block split of a label table (test, validation, gap, inside-training block),
and its file ``split.parquet`` (one writer, one reader)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import storage
from ..errors import MethrayError

SPLIT_FILE = "split.parquet"


def split_windows(
    windows: pd.DataFrame,
    *,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    inside_fraction: float = 0.05,
    gap: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Hold out contiguous blocks of windows for validation and test, with a gap.

    Random splits of overlapping windows leak: with stride < length a test window shares
    sequence with its neighbours, so DeepGMAP (Onimaru et al. 2020) held out contiguous regions.
    Here, in genome order (``windows`` row order by contig as first seen, then start):

    1. One contiguous block of ``round(test_fraction * n)`` windows becomes ``test`` and one of
       ``round(valid_fraction * n)`` windows ``valid``, at seeded random, non-overlapping
       positions (the blocks may span a contig boundary).
    2. Each held-out block's genomic span per contig (``[min start, max end)``) is widened by
       ``gap`` bp on both sides; every window of another split that overlaps a widened test span
       or a widened valid span becomes ``gap`` (unused), test taking priority over valid. So no
       train (or valid) window overlaps a test window, whatever the stride, and with
       ``gap >= 0`` the nearest train window starts at least ``gap`` bp after a test window ends.
    3. The ``inside`` flag marks a contiguous run of ``round(inside_fraction * n)`` *train*
       windows (seeded position inside the longest run of consecutive train windows on one
       contig): the "inside training" region of DeepGMAP Table 2 -- the model trains on it, and
       comparing its metrics to the test block's shows overfitting.

    Parameters
    ----------
    windows
        ``chrom``, ``start``, ``end`` (0-based half-open), e.g. from :func:`read_labels`.
    valid_fraction, test_fraction, inside_fraction
        Fractions of all windows (before gap removal); each in [0, 1), valid + test < 1.
    gap
        Extra bp kept free around held-out blocks (>= 0).
    seed
        Seed for the block positions.

    Returns
    -------
    pd.DataFrame
        Same index as ``windows``; ``split`` (str: train / valid / test / gap) and ``inside``
        (bool, a subset of train).

    Raises
    ------
    MethrayError
        Bad fractions, negative gap, missing columns.
    """
    for col in ("chrom", "start", "end"):
        if col not in windows:
            raise MethrayError(f"split_windows: windows table has no {col!r} column")
    fr = {"valid_fraction": valid_fraction, "test_fraction": test_fraction, "inside_fraction": inside_fraction}
    for k, v in fr.items():
        if not 0 <= v < 1:
            raise MethrayError(f"split_windows: {k} must be in [0, 1), got {v}")
    if valid_fraction + test_fraction + inside_fraction >= 1:
        raise MethrayError("split_windows: valid_fraction + test_fraction + inside_fraction must be < 1")
    if gap < 0:
        raise MethrayError(f"split_windows: gap must be >= 0, got {gap}")

    chrom_order = {c: i for i, c in enumerate(pd.unique(windows["chrom"]))}
    ci = windows["chrom"].map(chrom_order).to_numpy(np.int64)
    start = windows["start"].to_numpy(np.int64)
    end = windows["end"].to_numpy(np.int64)
    order = np.lexsort((start, ci))
    ci, start, end = ci[order], start[order], end[order]
    n = len(order)
    rng = np.random.default_rng(seed)
    nt, nv = int(round(test_fraction * n)), int(round(valid_fraction * n))
    free = n - nt - nv
    cuts = np.sort(rng.integers(0, free + 1, size=2))
    blocks = [("test", nt), ("valid", nv)]
    if rng.random() < 0.5:
        blocks.reverse()
    # layout in genome order: [c0 train] [block A] [c1 - c0 train] [block B] [free - c1 train]
    split = np.full(n, "train", dtype=object)
    (name_a, size_a), (name_b, size_b) = blocks
    split[cuts[0]:cuts[0] + size_a] = name_a
    split[cuts[1] + size_a:cuts[1] + size_a + size_b] = name_b
    # widen held-out spans per contig and drop overlapping windows of lower priority
    for name, lower in (("test", ("train", "valid")), ("valid", ("train",))):
        sel = split == name
        for c in np.unique(ci[sel]):
            on = sel & (ci == c)
            lo, hi = start[on].min() - gap, end[on].max() + gap
            hit = (ci == c) & (start < hi) & (end > lo) & np.isin(split, lower)
            split[hit] = "gap"
    # inside-training block: within the longest run of consecutive train windows on one contig
    inside = np.zeros(n, dtype=bool)
    ni = int(round(inside_fraction * n))
    is_train = split == "train"
    if ni and is_train.any():
        brk = np.concatenate([[True], (~is_train[1:]) | (~is_train[:-1]) | (ci[1:] != ci[:-1])])
        run_id = np.cumsum(brk)
        run_len = np.bincount(run_id[is_train])
        best = int(np.argmax(run_len))
        idx = np.flatnonzero((run_id == best) & is_train)
        ni = min(ni, len(idx))
        off = int(rng.integers(0, len(idx) - ni + 1))
        inside[idx[off:off + ni]] = True
    out = pd.DataFrame(index=windows.index)
    res_split = np.empty(n, dtype=object)
    res_inside = np.zeros(n, dtype=bool)
    res_split[order] = split
    res_inside[order] = inside
    out["split"] = res_split
    out["inside"] = res_inside
    return out


def write_split(split: pd.DataFrame, out_dir: str) -> None:
    """Write ``<out_dir>/split.parquet`` (``split``, ``inside``; rows in label-table order), atomically."""
    with storage.atomic_path(storage.join(out_dir, SPLIT_FILE)) as tmp:
        split.reset_index(drop=True).to_parquet(tmp, index=False)


def read_split(out_dir: str) -> pd.DataFrame:
    """The split written by :func:`write_split`.

    Raises
    ------
    MethrayError
        No split in ``out_dir`` (run the labels step first).
    """
    path = storage.join(out_dir, SPLIT_FILE)
    if not storage.exists(path):
        raise MethrayError(f"{path}: no split; run the labels step first")
    fs, p = storage.filesystem(path)
    with fs.open(p, "rb") as fh:
        return pd.read_parquet(fh)
