"""Class sources of the label table: peak files (narrowPeak / BED) and site tables (BED4+),
each row with its summit (0-based), checked against the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import MethrayError
from ..genome import Reference
from ..io.bed import read_bed

NARROWPEAK_NAMES = ["name", "score", "strand", "signal", "pvalue", "qvalue", "peak"]


def _is_narrowpeak(path: str) -> bool:
    p = str(path).lower()
    return p.endswith(".narrowpeak") or p.endswith(".narrowpeak.gz")


def read_peaks(path: str, reference: Reference, *, skip_unknown_chroms: bool = False) -> pd.DataFrame:
    """Read a peak file and compute each peak's summit.

    Parameters
    ----------
    path
        narrowPeak (name ends in ``.narrowPeak``/``.narrowPeak.gz``: summit from column 10) or
        BED (3+ columns: summit = centre ``(start + end) // 2``).
    reference
        Contig names and sizes to check against.
    skip_unknown_chroms
        Drop rows on contigs the reference lacks instead of raising.

    Returns
    -------
    pd.DataFrame
        ``chrom`` (str), ``start``, ``end``, ``summit`` (int64, 0-based), ``line``.

    Raises
    ------
    MethrayError
        Missing file, bad columns, a chromosome not in the reference, a peak past the contig
        end, or a summit offset outside ``[0, end - start)`` (other than -1), naming the line.
    """
    narrow = _is_narrowpeak(path)
    df = read_bed(path, min_columns=10 if narrow else 3, names=NARROWPEAK_NAMES if narrow else None)
    start = df["start"].to_numpy(np.int64)
    end = df["end"].to_numpy(np.int64)
    centre = (start + end) // 2
    if narrow:
        off = pd.to_numeric(df["peak"], errors="coerce")
        bad = off.isna().to_numpy() | (off.notna().to_numpy() & (off % 1 != 0).to_numpy())
        if bad.any():
            i = int(np.argmax(bad))
            raise MethrayError(f"{path}:{df['line'].iloc[i]}: expected an integer summit offset in column 10, got {df['peak'].iloc[i]!r}")
        off = off.to_numpy(np.int64)
        bad = (off < -1) | (off >= np.maximum(end - start, 1))
        if bad.any():
            i = int(np.argmax(bad))
            raise MethrayError(
                f"{path}:{df['line'].iloc[i]}: summit offset {off[i]} (column 10) is outside the peak "
                f"[{start[i]}, {end[i]}) (expected 0 <= offset < end - start, or -1)"
            )
        summit = np.where(off >= 0, start + off, centre)
    else:
        summit = centre
    out = df[["chrom", "start", "end", "line"]].copy()
    out["summit"] = summit
    return _check_on_reference(out, reference, path, skip_unknown_chroms)


def read_factor_sites(path: str, reference: Reference, *, skip_unknown_chroms: bool = False) -> pd.DataFrame:
    """Read a site table (BED4+, name column = class / factor).

    Parameters
    ----------
    path
        BED4+ file, local or ``s3://``, optionally gzipped.
    reference, skip_unknown_chroms
        As for :func:`read_peaks`.

    Returns
    -------
    pd.DataFrame
        ``chrom``, ``start``, ``end``, ``name`` (str), ``summit`` (= centre ``(start+end)//2``),
        ``line``.

    Raises
    ------
    MethrayError
        Missing file, fewer than 4 columns, an empty name, a chromosome not in the reference, or
        a site past the contig end.
    """
    df = read_bed(path, min_columns=4, names=["name"])
    out = df[["chrom", "start", "end", "name", "line"]].copy()
    out["summit"] = (out["start"].to_numpy(np.int64) + out["end"].to_numpy(np.int64)) // 2
    return _check_on_reference(out, reference, path, skip_unknown_chroms)


def _check_on_reference(df: pd.DataFrame, reference: Reference, path: str, skip_unknown: bool) -> pd.DataFrame:
    if skip_unknown:
        df = df[df["chrom"].isin(reference.sizes)]
    for chrom, grp in df.groupby("chrom", sort=False):
        line = grp["line"].iloc[0]
        reference.check_chrom(str(chrom), source=f"{path}:{line}")
        size = reference.sizes[str(chrom)]
        past = (grp["end"].to_numpy() > size) | (grp["summit"].to_numpy() >= size)
        if past.any():
            row = grp.iloc[int(np.argmax(past))]
            raise MethrayError(
                f"{path}:{row['line']}: interval {chrom}:{row['start']}-{row['end']} (summit {row['summit']}) "
                f"runs past the end of {chrom} ({size:,} bp)"
            )
    return df
