"""BED intervals (0-based, half-open): reading and point-in-interval lookups."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import storage
from ..errors import MethrayError
from .text import read_table


def read_bed(path: str, min_columns: int = 3, names: list[str] | None = None) -> pd.DataFrame:
    """Read a BED file (``track``/``browser``/``#`` header lines skipped).

    Parameters
    ----------
    path
        BED file, local or ``s3://``, optionally gzipped.
    min_columns
        Columns required (3 = chrom, start, end).
    names
        Names for the columns after ``chrom, start, end`` (e.g. ``["name"]``).

    Returns
    -------
    pd.DataFrame
        ``chrom`` (str), ``start``, ``end`` (int64, 0-based half-open), further columns as read,
        and ``line`` (1-based line number in the file).

    Raises
    ------
    MethrayError
        Missing file, too few columns, non-integer coordinates or ``end < start``,
        with the offending line.
    """
    cols = ["chrom", "start", "end", *(names or [])]
    df = read_table(path, cols, min_columns=min_columns, int_columns=["start", "end"])
    bad = np.flatnonzero((df["end"] < df["start"]).to_numpy() | (df["start"] < 0).to_numpy())
    if bad.size:
        row = df.iloc[bad[0]]
        raise MethrayError(f"{path}:{row['line']}: expected 0 <= start <= end, got start={row['start']} end={row['end']}")
    return df


class IntervalIndex:
    """Fast membership of positions in a set of BED intervals (per chromosome, merged).

    Parameters
    ----------
    intervals
        DataFrame with ``chrom``, ``start``, ``end`` (0-based half-open).
    """

    def __init__(self, intervals: pd.DataFrame):
        self._by_chrom: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for chrom, grp in intervals.groupby("chrom", sort=False):
            starts, ends = merge_intervals(grp["start"].to_numpy(np.int64), grp["end"].to_numpy(np.int64))
            self._by_chrom[str(chrom)] = (starts, ends)

    def intervals(self, chrom: str) -> tuple[np.ndarray, np.ndarray]:
        """The merged intervals of ``chrom`` as sorted, disjoint ``(starts, ends)`` (``int64``; empty if none)."""
        empty = np.zeros(0, dtype=np.int64)
        return self._by_chrom.get(chrom, (empty, empty))

    def contains(self, chrom: str, positions: np.ndarray) -> np.ndarray:
        """Whether each 0-based position lies inside an interval, ``(N,) bool``."""
        pos = np.asarray(positions, dtype=np.int64)
        if chrom not in self._by_chrom:
            return np.zeros(pos.shape, dtype=bool)
        starts, ends = self._by_chrom[chrom]
        i = np.searchsorted(starts, pos, side="right") - 1
        ok = i >= 0
        out = np.zeros(pos.shape, dtype=bool)
        out[ok] = pos[ok] < ends[i[ok]]
        return out

    def flag(self, chroms: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Membership for sites on several chromosomes, ``(N,) bool``."""
        codes, names = pd.factorize(np.asarray(chroms))  # hashing, not sorting strings: genome-scale tables
        out = np.zeros(len(codes), dtype=bool)
        for k, chrom in enumerate(names):
            sel = codes == k
            out[sel] = self.contains(str(chrom), np.asarray(positions)[sel])
        return out


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of half-open intervals as sorted, disjoint ``(starts, ends)`` (``int64``)."""
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    keep = e > s
    s, e = s[keep], e[keep]
    if s.size == 0:
        return s, e
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    reach = np.maximum.accumulate(e)
    new = np.concatenate([[True], s[1:] > reach[:-1]])
    idx = np.flatnonzero(new)
    return s[idx], np.maximum.reduceat(e, idx)


def covered_bp(starts: np.ndarray, ends: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Bases of ``[lo, hi)`` covered by disjoint sorted intervals ``[starts, ends)``.

    Returns
    -------
    np.ndarray
        ``(len(lo),) int64``.
    """
    lengths = ends - starts
    cum = np.concatenate([[0], np.cumsum(lengths)])

    def upto(x):  # covered bases in [0, x)
        j = np.searchsorted(starts, x, side="right")  # intervals starting at or before x
        out = np.zeros(len(x), dtype=np.int64)
        ok = j > 0
        jj = j[ok] - 1
        out[ok] = cum[jj] + np.clip(x[ok] - starts[jj], 0, lengths[jj])
        return out

    return upto(np.asarray(hi, dtype=np.int64)) - upto(np.asarray(lo, dtype=np.int64))


def load_islands(path: str | None) -> IntervalIndex:
    """CpG islands (e.g. UCSC cpgIslandExt BED) as an :class:`IntervalIndex`; empty if ``path`` is None."""
    if not path:
        return IntervalIndex(pd.DataFrame({"chrom": [], "start": [], "end": []}))
    if not storage.exists(path):
        raise MethrayError(f"{path}: CpG island BED not found")
    return IntervalIndex(read_bed(path))
