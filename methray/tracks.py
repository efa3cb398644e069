"""Genome tracks out: sorted bedGraph (0-based, half-open) and bigWig.

A CpG's value is written as the one-base interval of its C, ``[pos, pos + 1)``, as in the
methylation bedGraphs methray reads. Rows are sorted by chromosome in reference (FASTA)
order, then by position, as ``bedGraphToBigWig`` and genome browsers expect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import storage


def sort_sites(df: pd.DataFrame, chrom_order: list[str], pos_col: str = "pos") -> pd.DataFrame:
    """Sort rows by chromosome in ``chrom_order`` (reference order), then position.

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
        Reference contig order for sorting.

    Returns
    -------
    int
        Number of data rows written.
    """
    sites = sort_sites(df, chrom_order, pos_col)
    with storage.atomic_write(path) as fh:
        fh.write(track_line(name, description))
        fh.write(bedgraph_lines(sites, value_col, pos_col, end_col=end_col))
    return len(sites)


def site_records(df: pd.DataFrame, chrom: str | None = None, value_col: str = "beta_pred", pos_col: str = "pos", digits: int = 4):
    """Sorted sites as bigWig records ``(chrom, pos, pos + 1, value)``.

    Values are rounded to ``digits`` decimals as in the bedGraph. ``chrom`` names the contig when ``df`` has no ``chrom`` column.
    """
    pos = df[pos_col].to_numpy(np.int64)
    # Parse the bedGraph's own text so both tracks hold exactly the same numbers.
    values = np.char.mod(f"%.{digits}f", df[value_col].to_numpy(np.float64)).astype(np.float64)
    chroms = [chrom] * len(df) if chrom is not None else df["chrom"].tolist()
    return zip(chroms, pos.tolist(), (pos + 1).tolist(), values.tolist())


def write_bigwig(path: str, chrom_sizes: dict[str, int], records) -> None:
    """Write a bigWig (pybigtools) from sorted records, atomically.

    Parameters
    ----------
    path
        Output path (local or ``s3://``).
    chrom_sizes
        Lengths of the contigs that have records, in reference order.
    records
        Iterable of ``(chrom, start, end, value)``, 0-based half-open, sorted by reference
        order then start (e.g. :func:`site_records`); consumed once, so it may stream.
    """
    import pybigtools

    with storage.atomic_path(path) as tmp:
        pybigtools.open(tmp, "w").write({c: int(n) for c, n in chrom_sizes.items()}, records)
