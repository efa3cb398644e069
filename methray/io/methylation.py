"""Readers of whole-genome bisulfite methylation calls.

Every reader returns one row per measured cytosine, in methray's convention:

========  =======  ===========================================================
column    dtype    meaning
========  =======  ===========================================================
chrom     str      chromosome name as in the file
pos       int64    0-based position of the measured C (either strand)
n_meth    float64  methylated read count (NaN when the format has no counts)
n_total   float64  read coverage (NaN when the format has no counts)
beta      float64  fraction methylated, 0..1
line      int64    1-based line number in the file (for error messages)
========  =======  ===========================================================

Strand assignment and merging of the two C's of a CpG happen in :mod:`methray.prepare`,
against the reference sequence.

Formats
-------
``bismark_cov``
    Bismark coverage file (``.cov`` / ``.cov.gz``; ``bismark_methylation_extractor`` /
    ``coverage2cytosine``): ``chrom, start, end, methylation %, count methylated,
    count unmethylated``, **1-based**, no header.
``bedgraph``
    Methylation bedGraph: ``chrom, start, end, methylation %``, **0-based half-open**, with an
    optional ``track`` line. Percent values (0-100) by default. No read counts, so the
    coverage filter cannot apply to it (such sites are counted as "coverage unknown").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import MethrayError
from .text import read_table

FORMATS = ("bismark_cov", "bedgraph")

_SUFFIXES = {
    ".cov": "bismark_cov",
    ".bismark.cov": "bismark_cov",
    ".bedgraph": "bedgraph",
    ".bg": "bedgraph",
}


def detect_format(path: str) -> str:
    """Guess the format from the file name (``.cov[.gz]``, ``.bedGraph[.gz]``, ``.bg[.gz]``).

    Raises
    ------
    MethrayError
        If the suffix is not recognised (set ``format`` in the config instead).
    """
    name = str(path).lower().removesuffix(".gz")
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    raise MethrayError(f"{path}: cannot tell the methylation format from the file name; set format: to one of {', '.join(FORMATS)}")


def read_methylation(path: str, fmt: str | None = None) -> pd.DataFrame:
    """Read a methylation file of format ``fmt`` (detected from the name when None).

    Returns
    -------
    pd.DataFrame
        The columns in the module docstring.

    Raises
    ------
    MethrayError
        Missing file, unknown format, a malformed line (wrong column count, non-numeric value,
        percent outside 0-100, negative counts or coordinates), with file and line.
    """
    fmt = fmt or detect_format(path)
    if fmt == "bismark_cov":
        return read_bismark_cov(path)
    if fmt == "bedgraph":
        return read_methylation_bedgraph(path)
    raise MethrayError(f"{path}: unknown methylation format {fmt!r}; expected one of {', '.join(FORMATS)}")


def read_bismark_cov(path: str) -> pd.DataFrame:
    """Read a Bismark coverage file (1-based) into the common table (0-based ``pos``)."""
    df = read_table(
        path,
        ["chrom", "start", "end", "percent", "n_meth", "n_unmeth"],
        int_columns=["start", "end", "n_meth", "n_unmeth"],
        float_columns=["percent"],
    )
    _check(df, path, df["start"] < 1, "a 1-based start >= 1 (Bismark coverage is 1-based)")
    _check(df, path, (df["n_meth"] < 0) | (df["n_unmeth"] < 0), "non-negative read counts")
    _check(df, path, (df["n_meth"] + df["n_unmeth"]) == 0, "coverage >= 1 (count methylated + unmethylated)")
    _check_percent(df, path)
    n_total = (df["n_meth"] + df["n_unmeth"]).astype(np.float64)
    return pd.DataFrame(
        {
            "chrom": df["chrom"].astype(str),
            "pos": df["start"].to_numpy(np.int64) - 1,
            "n_meth": df["n_meth"].astype(np.float64),
            "n_total": n_total,
            "beta": df["n_meth"] / n_total,
            "line": df["line"],
        }
    )


def read_methylation_bedgraph(path: str) -> pd.DataFrame:
    """Read a methylation bedGraph (0-based, percent values) into the common table."""
    df = read_table(path, ["chrom", "start", "end", "percent"], int_columns=["start", "end"], float_columns=["percent"])
    _check(df, path, df["start"] < 0, "a 0-based start >= 0")
    _check(df, path, df["end"] <= df["start"], "end > start (0-based half-open)")
    _check_percent(df, path)
    return pd.DataFrame(
        {
            "chrom": df["chrom"].astype(str),
            "pos": df["start"].to_numpy(np.int64),
            "n_meth": np.nan,
            "n_total": np.nan,
            "beta": df["percent"] / 100.0,
            "line": df["line"],
        }
    )


def _check(df: pd.DataFrame, path: str, bad: pd.Series, expected: str) -> None:
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        i = int(np.argmax(bad))
        raise MethrayError(f"{path}:{df['line'].iloc[i]}: expected {expected}")


def _check_percent(df: pd.DataFrame, path: str) -> None:
    _check(df, path, (df["percent"] < 0) | (df["percent"] > 100), "a methylation percentage in 0..100")
