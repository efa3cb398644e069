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
chromosome index is a B+ tree keyed by name (Kent et al. 2010, Bioinformatics 26:2204) and
libBigWig numbers the chromosomes in the order given, so any other order would leave the
tree's keys out of order. It is written with pyBigWig (libBigWig),
which computes the zoom levels (summaries of 16 bp to ~65 kb bins for CpG tracks) from the
written data. Known libBigWig defect: it stores a zoom record's sum only when the next record
starts, so the last record of each 1,023-record zoom block and of each level keeps sum 0
(count, min and max right; ~0.1% of records). pybigtools 0.3.0 is not used for writing: for
sparse data such as CpGs its zoom records count the gap between a zoom bin's start and the
first item in the bin as covered bases with that item's value, so zoomed-out means and
coverage are wrong (jackh726/bigtools issue 85 shows the same on CpG bedGraphs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

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


def bedgraph_lines(df: pd.DataFrame, value_col: str, pos_col: str = "pos", digits: int = 4, end_col: str | None = None) -> str:
    """Format sorted sites as bedGraph rows ``chrom<TAB>pos<TAB>pos+1<TAB>value``.

    With ``end_col`` the rows are intervals ``chrom<TAB>pos<TAB>end<TAB>value`` (0-based,
    half-open; e.g. regulatory windows with ``pos_col="start"``).
    """
    if df.empty:
        return ""
    pos = df[pos_col].to_numpy(np.int64)
    end = df[end_col].to_numpy(np.int64) if end_col else pos + 1
    values = np.char.mod(f"%.{digits}f", df[value_col].to_numpy(np.float64))
    rows = pd.DataFrame({"c": df["chrom"].to_numpy(), "s": pos, "e": end, "v": values})
    return rows.to_csv(sep="\t", header=False, index=False, lineterminator="\n")


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


def site_entries(df: pd.DataFrame, chrom: str, value_col: str = "beta_pred", pos_col: str = "pos", digits: int = 4):
    """Sorted sites of one chromosome as a bigWig block ``(chrom, starts, ends, values)``.

    Parameters
    ----------
    df
        Sites of ``chrom`` sorted by ``pos_col`` (0-based C position).

    Returns
    -------
    tuple
        ``chrom``, ``starts`` ``(N,) int64``, ``ends = starts + 1``, ``values`` ``(N,) float64``
        rounded to ``digits`` decimals exactly as the bedGraph prints them.
    """
    pos = df[pos_col].to_numpy(np.int64)
    # Parse the bedGraph's own text so both tracks hold exactly the same numbers.
    values = np.char.mod(f"%.{digits}f", df[value_col].to_numpy(np.float64)).astype(np.float64)
    return chrom, pos, pos + 1, values


def write_bigwig(path: str, chrom_sizes: dict[str, int], blocks, max_zooms: int = MAX_ZOOMS) -> None:
    """Write a bigWig with zoom levels (pyBigWig) from sorted blocks, atomically.

    Parameters
    ----------
    path
        Output path (local or ``s3://``).
    chrom_sizes
        Lengths of the contigs that have data (the bigWig's chromosome list, written in
        ``sorted`` order).
    blocks
        Iterable of ``(chrom, starts, ends, values)`` with ``(N,)`` arrays (0-based
        half-open, non-overlapping), by chromosome in ``sorted`` order then by start (e.g.
        :func:`site_entries`); consumed once, so it may stream one shard at a time.
    max_zooms
        Most zoom levels; libBigWig makes them from 4x the mean interval size up, each 4x
        the last, while the bins stay shorter than the longest contig.

    Raises
    ------
    ValueError
        A block of a contig not in ``chrom_sizes`` or out of order.
    """
    import pyBigWig

    chroms = ordered_chroms(chrom_sizes, "sorted")
    rank = {c: i for i, c in enumerate(chroms)}
    with storage.atomic_path(path) as tmp:
        bw = pyBigWig.open(tmp, "w")
        try:
            bw.addHeader([(c, int(chrom_sizes[c])) for c in chroms], maxZooms=max_zooms)
            last = (-1, -1)
            for chrom, starts, ends, values in blocks:
                if not len(starts):
                    continue
                if chrom not in rank or (rank[chrom], int(starts[0])) < last:
                    raise ValueError(f"bigWig block {chrom}:{int(starts[0])} is not in sorted chromosome order")
                last = (rank[chrom], int(ends[-1]))
                bw.addEntries([chrom] * len(starts), np.asarray(starts, np.int64).tolist(),
                              ends=np.asarray(ends, np.int64).tolist(), values=np.asarray(values, np.float64).tolist())
        finally:
            bw.close()
