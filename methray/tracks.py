"""Genome tracks out: sorted bedGraph (0-based, half-open) and bigWig.

A CpG's value is written as the one-base interval of its C, ``[pos, pos + 1)``, as in the
methylation bedGraphs methray reads.

Row order (``score.track_order``):

- ``sorted`` (default): chromosome names in byte order, then start, i.e. the order of
  ``LC_ALL=C sort -k1,1 -k2,2n``, which UCSC (``bedGraphToBigWig`` up to v454 refuses
  anything else), ``bedtools ... -sorted`` and tabix document;
- ``reference``: chromosomes in the reference FASTA's order, then start (accepted by
  ``bedGraphToBigWig`` from v455 and by genome browsers, not by ``sort -c``).

The bigWig always lists its chromosomes, and stores its data, in ``sorted`` order: its
chromosome index is a B+ tree keyed by name (Kent et al. 2010, Bioinformatics 26:2204),
its keys in byte order. It is written by :mod:`methray.bigwig`, which streams: data
sections as they fill, each zoom level (summaries of 16 bp bins and up, 4x per level)
spilled to a temporary file block by block, so the writing process holds one shard, not the
genome (libBigWig, through pyBigWig, keeps every zoom record in memory until it closes,
~46 B per CpG; pybigtools 0.3.0 writes wrong zoom records for sparse data; that module's
docstring has the details). pyBigWig reads the files.

Values are printed ``"%.4f"``: :func:`decimal_text` gives Python's (printf's) text byte for
byte from a lookup table, :func:`decimal_values` the float64 that text reads back as, which
is what the bigWig stores (as float32).
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from . import storage

TrackOrder = Literal["sorted", "reference"]
TRACK_ORDERS: tuple[str, ...] = ("sorted", "reference")
MAX_ZOOMS = 10  # as UCSC's bedGraphToBigWig


def ordered_chroms(chroms: Iterable[str], order: TrackOrder = "sorted") -> list[str]:
    """The chromosome order of output tracks.

    Parameters
    ----------
    chroms
        The reference's contigs in FASTA order.
    order
        ``sorted``: byte order of the names (``LC_ALL=C sort -k1,1``; Python compares str by
        code point, which is the byte order of UTF-8); ``reference``: as given.

    Raises
    ------
    ValueError
        Unknown ``order``.
    """
    if order not in TRACK_ORDERS:
        raise ValueError(f"track order {order!r}: expected one of {', '.join(TRACK_ORDERS)}")
    chroms = list(chroms)
    return sorted(chroms) if order == "sorted" else chroms


def sort_sites(df: pd.DataFrame, chrom_order: list[str], pos_col: str = "pos") -> pd.DataFrame:
    """Sort rows by chromosome in the given ``chrom_order``, then position.

    Raises
    ------
    ValueError
        If a chromosome of ``df`` is not in ``chrom_order``.
    """
    rank = {c: i for i, c in enumerate(chrom_order)}
    missing = set(df["chrom"].unique()) - set(rank)
    if missing:
        raise ValueError(f"chromosomes not in the reference order: {sorted(missing)}")
    key = df["chrom"].map(rank).to_numpy(np.int64)
    order = np.lexsort((df[pos_col].to_numpy(np.int64), key))
    return df.iloc[order].reset_index(drop=True)


# Values below 10 are formatted from a table of every "%.{digits}f" text (2 x 10^(digits + 1)
# strings); more digits than this, or larger values, go through np.char.mod.
TABLE_DIGITS = 4


@functools.lru_cache(maxsize=None)
def _decimal_table(digits: int) -> pa.StringArray:
    """Texts of k / 10^digits for k in [0, 10^(digits + 1)), then the same with a leading ``-``."""
    scale = 10**digits
    text = [f"{k // scale}.{k % scale:0{digits}d}" if digits else str(k) for k in range(10 * scale)]
    return pa.array(text + ["-" + t for t in text], pa.string())


def _rounded(values: np.ndarray, digits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(k, negative, exact)``: |value| x 10^digits rounded as printf rounds it, per value.

    printf (and Python's ``%``, which ``np.char.mod`` calls) rounds the exact binary value
    half to even. ``np.rint`` of the float64 product does the same unless the product's own
    rounding error moves it across a half: below 10^(digits + 1) <= 10^5 that error is
    < 2^-36, so every product within 1e-6 of a half, and every value that is not finite or
    not below 10, is marked not ``exact`` (the callers format those with ``np.char.mod``).
    """
    negative = np.signbit(values)
    product = np.abs(values) * 10.0**digits
    k = np.rint(product)
    with np.errstate(invalid="ignore"):
        exact = (product < 10 * 10**digits - 1) & (np.abs(product - np.floor(product) - 0.5) > 1e-6)
    if digits > TABLE_DIGITS:
        exact[:] = False
    return np.where(exact, k, 0).astype(np.int64), negative, exact


def decimal_text(values: np.ndarray, digits: int = 4) -> pa.StringArray:
    """``"%.{digits}f" % value`` of each value (the bedGraph's text), as ``np.char.mod`` writes it.

    Parameters
    ----------
    values
        ``(N,) float64`` (float32 values are converted exactly).

    Returns
    -------
    pyarrow.StringArray
        ``(N,)`` texts, e.g. ``0.1235``, ``-0.0000``, ``nan``; byte for byte those of
        ``np.char.mod(f"%.{digits}f", values)``, ~20x faster for values below 10.
    """
    values = np.asarray(values, np.float64)
    return _text(values, _rounded(values, digits), digits)


def decimal_values(values: np.ndarray, digits: int = 4) -> np.ndarray:
    """The float64 that each ``"%.{digits}f"`` text of :func:`decimal_text` reads back as.

    ``k / 10^digits`` for the printed integer ``k``: IEEE division rounds the exact quotient
    to the nearest double, as ``strtod`` does the decimal text, so both give the same double
    (signs kept: ``-0.0000`` is ``-0.0``). Returns ``(N,) float64``.
    """
    values = np.asarray(values, np.float64)
    return _values(values, _rounded(values, digits), digits)


def decimals(values: np.ndarray, digits: int = 4) -> tuple[pa.StringArray, np.ndarray]:
    """:func:`decimal_text` and :func:`decimal_values` of the same values, rounded once."""
    values = np.asarray(values, np.float64)
    rounded = _rounded(values, digits)
    return _text(values, rounded, digits), _values(values, rounded, digits)


def _text(values: np.ndarray, rounded, digits: int) -> pa.StringArray:
    import pyarrow.compute as pc

    k, negative, exact = rounded
    text = _decimal_table(min(digits, TABLE_DIGITS)).take(pa.array(k + negative * (10 * 10 ** min(digits, TABLE_DIGITS))))
    if not exact.all():
        slow = np.char.mod(f"%.{digits}f", values[~exact])
        text = pc.replace_with_mask(text, pa.array(~exact), pa.array(slow.tolist(), pa.string()))
    return text


def _values(values: np.ndarray, rounded, digits: int) -> np.ndarray:
    k, negative, exact = rounded
    out = np.where(negative, -k, k) / 10.0**digits
    out[negative & (k == 0)] = -0.0
    if not exact.all():
        out[~exact] = np.char.mod(f"%.{digits}f", values[~exact]).astype(np.float64)
    return out


def bedgraph_rows(chrom: pa.Array, starts: np.ndarray, ends: np.ndarray, text: pa.Array) -> str:
    """Rows ``chrom<TAB>start<TAB>end<TAB>text``, each ending in ``\\n``.

    Written by pyarrow's CSV writer (unquoted); a chromosome name that needs quoting (a
    quote, tab or line break in it) goes through pandas ``to_csv`` instead, which quotes it.
    """
    import pyarrow.csv as pacsv

    table = pa.table({"c": chrom, "s": pa.array(starts, pa.int64()), "e": pa.array(ends, pa.int64()), "v": text})
    buf = io.BytesIO()
    try:
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none", batch_size=1 << 16))
    except pa.ArrowInvalid:
        return table.to_pandas().to_csv(sep="\t", header=False, index=False, lineterminator="\n")
    return buf.getvalue().decode()


def bedgraph_lines(df: pd.DataFrame, value_col: str, pos_col: str = "pos", digits: int = 4, end_col: str | None = None) -> str:
    """Format sorted sites as bedGraph rows ``chrom<TAB>pos<TAB>pos+1<TAB>value``.

    With ``end_col`` the rows are intervals ``chrom<TAB>pos<TAB>end<TAB>value`` (0-based,
    half-open; e.g. regulatory windows with ``pos_col="start"``). Values are printed
    ``"%.{digits}f"`` (:func:`decimal_text`).
    """
    if df.empty:
        return ""
    pos = df[pos_col].to_numpy(np.int64)
    end = df[end_col].to_numpy(np.int64) if end_col else pos + 1
    chrom = pa.array(df["chrom"].to_numpy(object), pa.string())
    return bedgraph_rows(chrom, pos, end, decimal_text(df[value_col].to_numpy(np.float64), digits))


def track_line(name: str, description: str) -> str:
    """A UCSC ``track`` header line for a bedGraph."""
    return f'track type=bedGraph name="{name}" description="{description}" visibility=full autoScale=off viewLimits=0:1\n'


def write_bedgraph(
    df: pd.DataFrame,
    path: str,
    *,
    name: str,
    description: str,
    chrom_order: list[str],
    order: TrackOrder = "sorted",
    value_col: str = "beta_pred",
    pos_col: str = "pos",
    end_col: str | None = None,
) -> int:
    """Write sites (or intervals, with ``end_col``) as a sorted bedGraph with a ``track`` line, atomically.

    Parameters
    ----------
    df
        Columns ``chrom``, ``pos_col`` (0-based C position) and ``value_col``; with
        ``end_col``, ``pos_col``/``end_col`` are 0-based half-open interval bounds.
    path
        Output path (local or ``s3://``); appears only when complete.
    chrom_order
        The reference's contigs in FASTA order.
    order
        Row order (module docstring): ``sorted`` (``LC_ALL=C sort -k1,1 -k2,2n``) or
        ``reference``.

    Returns
    -------
    int
        Number of data rows written.
    """
    sites = sort_sites(df, ordered_chroms(chrom_order, order), pos_col)
    with storage.atomic_write(path) as fh:
        fh.write(track_line(name, description))
        fh.write(bedgraph_lines(sites, value_col, pos_col, end_col=end_col))
    return len(sites)


@contextlib.contextmanager
def bigwig_writer(path: str, chrom_sizes: dict[str, int], max_zooms: int = MAX_ZOOMS) -> Iterator[Callable]:
    """Open a bigWig for writing (:class:`methray.bigwig.BigWigWriter`), atomically; yields
    ``add(chrom, starts, ends, values)``.

    Parameters
    ----------
    path
        Output path (local or ``s3://``); appears only when the block ends without error.
    chrom_sizes
        Lengths of the contigs that have data (the bigWig's chromosome list, written in
        ``sorted`` order).
    max_zooms
        Most zoom levels (16x the mean interval length up, each 4x the last).

    ``add`` takes ``(N,)`` arrays (0-based half-open, non-overlapping; values stored as
    float32) by chromosome in ``sorted`` order then by start, and raises ``ValueError`` for a
    contig not in ``chrom_sizes`` or intervals out of order, overlapping or past the contig's
    end. The writer holds one block and one pending zoom record per level, whatever the
    number of intervals (README "Scale").
    """
    from .bigwig import BigWigWriter

    chroms = ordered_chroms(chrom_sizes, "sorted")
    with storage.atomic_path(path) as tmp:
        writer = BigWigWriter(tmp, [(c, int(chrom_sizes[c])) for c in chroms], max_zooms)
        try:
            yield writer.add
        except BaseException:
            writer.abort()
            raise
        writer.close()
