"""Multi-label window tables for regulatory-element tasks (TF binding, open chromatin).

The genome (or the chosen contigs) is cut into fixed-length windows on a regular grid and each
window gets one 0/1 label per class. Two labelling rules are available:

``mode="summit"`` (default; DeepGMAP, Onimaru et al. 2020)
    Windows of ``length`` bp (default 1000) every ``stride`` bp (default 300). A window is
    positive for a class if it *contains* the summit of one of the class's peaks, or the centre
    of one of its sites. DeepGMAP found 1 kb windows with a 300 bp stride trained best, and that
    smaller strides or random (non-contiguous) splits overfit; see :func:`split_windows`.

``mode="deepsea"`` (DeepSEA, Zhou & Troyanskaya 2015)
    The label refers to the central ``bin_length`` bp bin (default 200) of each ``length`` bp
    input window (default 1000, i.e. 400 bp flanks each side). A bin is positive for a peak
    class if at least ``min_overlap`` (default 0.5) of the bin lies inside the class's peak
    intervals (union of the peaks); point-like site classes are positive when a site centre lies
    in the bin. DeepSEA's own rule is "more than half"; the two differ only for an overlap of
    exactly ``bin_length / 2`` bp, which is positive here. DeepSEA tiled bins without overlap,
    so the default stride in this mode is ``bin_length``.

Coordinates and edges
---------------------
All coordinates are 0-based and half-open. Window ``i`` of a contig is
``[i * stride, i * stride + length)`` for ``i = 0 .. (size - length) // stride``; a window
that would run past the contig end is not made, so the last ``(size - length) % stride`` bp of
a contig are only covered by earlier windows (or by none when ``size < length``).
"Contains" means ``w_start <= p < w_end``: a summit exactly at a window's start is inside it, a
summit exactly at its end (``p == w_end``) is not (it belongs to the next windows). A summit is
therefore inside ``ceil(length / stride)`` or ``floor(length / stride)`` windows (3 or 4 for
1000 / 300), fewer near contig ends.

Summits and centres: a narrowPeak (ENCODE BED6+4, file name ending in ``.narrowPeak``, optionally
``.gz``) gives its summit in column 10 as an offset from ``start``: ``summit = start + col10``;
``col10 = -1`` (no summit called) and BED peak files use the centre ``(start + end) // 2``.
Site tables (BED4+, name = class) use the centre ``(start + end) // 2`` (= ``start`` for 1 bp
sites).

Windows with too many unknown bases (fraction of N codes over the whole input window
``> max_n_fraction``, default 0.1) are dropped and counted; all-zero (negative) windows can be
down-sampled (DeepGMAP kept 25 %).

References
----------
Onimaru K, Nishimura O, Kuraku S (2020). Predicting gene regulatory regions with a
convolutional neural network for processing double-strand genome sequence information.
PLoS Comput Biol 16(4): e1007616 (DeepGMAP).

Zhou J, Troyanskaya OG (2015). Predicting effects of noncoding variants with deep
learning-based sequence model. Nat Methods 12: 931-934 (DeepSEA).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .encoding import n_runs
from .errors import MethrayError
from .genome import Reference
from .io.bed import covered_bp, merge_intervals, read_bed

WINDOWS_FILE = "windows.parquet"
CLASSES_FILE = "classes.json"
NARROWPEAK_NAMES = ["name", "score", "strand", "signal", "pvalue", "qvalue", "peak"]
PARQUET_CLASSES_KEY = b"methray.classes"


@dataclass
class LabelSummary:
    """What :func:`build_labels` did.

    Attributes
    ----------
    path, classes_path
        The Parquet table and the ``classes.json`` sidecar written.
    classes
        Class names in the order of the ``labels`` column.
    mode, length, stride, bin_length
        The window geometry used (bp).
    windows_total
        Windows on the grid of the chosen contigs.
    windows_dropped_n
        Windows dropped because their N fraction exceeded ``max_n_fraction``.
    negatives_total
        All-zero windows among those kept after the N filter.
    negatives_dropped
        All-zero windows removed by negative down-sampling.
    windows_written
        Rows in the Parquet table (``windows_total - windows_dropped_n - negatives_dropped``).
    positives
        Class -> number of written windows positive for it.
    unplaced
        Class -> number of its summits / site centres (point-labelled classes) that lie in no
        written window (in N-dropped windows, off the window grid at a contig end, or on a
        contig not selected).
    classes_dropped
        Site factor -> number of its sites, for factors below ``min_sites``.
    """

    path: str
    classes_path: str
    classes: list[str]
    mode: str
    length: int
    stride: int
    bin_length: int | None
    windows_total: int = 0
    windows_dropped_n: int = 0
    negatives_total: int = 0
    negatives_dropped: int = 0
    windows_written: int = 0
    positives: dict[str, int] = field(default_factory=dict)
    unplaced: dict[str, int] = field(default_factory=dict)
    classes_dropped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The summary as plain JSON-serialisable types."""
        return asdict(self)

    def format(self) -> str:
        """A short human-readable report."""
        pos = np.array(list(self.positives.values()) or [0])
        lines = [
            f"windows: {self.windows_total:,} on the grid ({self.mode}, length {self.length}, stride {self.stride})",
            f"  dropped for N: {self.windows_dropped_n:,}; negatives: {self.negatives_total:,}, "
            f"down-sampled away: {self.negatives_dropped:,}; written: {self.windows_written:,}",
            f"classes: {len(self.classes)} kept, {len(self.classes_dropped)} site factors dropped (too few sites)",
            f"  positive windows per class: min {pos.min():,}, median {int(np.median(pos)):,}, max {pos.max():,}",
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Reading classes
# --------------------------------------------------------------------------------------------


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


def read_sites(path: str, reference: Reference, *, skip_unknown_chroms: bool = False) -> pd.DataFrame:
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


# --------------------------------------------------------------------------------------------
# Vectorised geometry
# --------------------------------------------------------------------------------------------


def window_starts(size: int, length: int, stride: int) -> np.ndarray:
    """Starts of the windows ``[s, s + length)`` that fit in a contig of ``size`` bp.

    Returns
    -------
    np.ndarray
        ``(n,) int64``, ``n = (size - length) // stride + 1`` (0 if ``size < length``).
    """
    if size < length:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, size - length + 1, stride, dtype=np.int64)


def point_windows(points: np.ndarray, n_windows: int, stride: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Which grid regions contain which points (integer arithmetic, no loop over windows).

    Region ``i`` is ``[i * stride, i * stride + span)``; point ``p`` is inside regions
    ``ceil((p - span + 1) / stride) .. floor(p / stride)``, clipped to ``0 .. n_windows - 1``.

    Parameters
    ----------
    points
        ``(m,) int64`` positions relative to the grid origin (may be negative).
    n_windows, stride, span
        Grid size, step and region length (bp).

    Returns
    -------
    window, point : np.ndarray
        ``(h,) int64`` each: hit ``k`` says region ``window[k]`` contains ``points[point[k]]``.
    """
    p = np.asarray(points, dtype=np.int64)
    lo = np.maximum(-((span - 1 - p) // stride), 0)
    hi = np.minimum(p // stride, n_windows - 1)
    k = np.maximum(hi - lo + 1, 0)
    total = int(k.sum())
    first = np.repeat(np.cumsum(k) - k, k)
    window = np.repeat(lo, k) + (np.arange(total, dtype=np.int64) - first)
    return window, np.repeat(np.arange(len(p), dtype=np.int64), k)


def n_counts(codes: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Number of N codes in each window ``[s, s + length)``, ``(n,) int64`` (from the runs of N)."""
    run_starts, run_ends = n_runs(codes)
    starts = np.asarray(starts, dtype=np.int64)
    return covered_bp(run_starts, run_ends, starts, starts + length)


# --------------------------------------------------------------------------------------------
# Building the table
# --------------------------------------------------------------------------------------------


def build_labels(
    reference: Reference | str,
    out_dir: str,
    *,
    peaks: Mapping[str, str] | None = None,
    sites: str | Sequence[str] | None = None,
    chroms: Sequence[str] | None = None,
    length: int = 1000,
    stride: int | None = None,
    mode: str = "summit",
    bin_length: int = 200,
    min_overlap: float = 0.5,
    min_sites: int = 50,
    max_n_fraction: float = 0.1,
    negative_fraction: float = 1.0,
    seed: int = 0,
    skip_unknown_chroms: bool = False,
    site_prefix: str = "",
) -> LabelSummary:
    """Build a multi-label window table and write it as Parquet (plus ``classes.json``).

    Parameters
    ----------
    reference
        A :class:`~methray.genome.Reference` or a FASTA path.
    out_dir
        Output folder (local or ``s3://``); receives ``windows.parquet`` and ``classes.json``.
    peaks
        Class name -> peak file (narrowPeak or BED); one class per file. Summit mode: positive
        if the window contains the summit (narrowPeak col 10) or centre. DeepSEA mode: positive
        if ``>= min_overlap`` of the bin lies in the union of the peaks.
    sites
        One or more site tables (BED4+, name column = factor). Each factor with at least
        ``min_sites`` sites on the chosen contigs becomes a class; positive if the window (the
        bin, in DeepSEA mode) contains a site centre.
    chroms
        Contigs to tile, in this order; default every contig of the reference. Peaks and sites
        on other contigs of the reference are ignored (counted in ``unplaced``).
    length
        Window (model input) length in bp; default 1000.
    stride
        Grid step in bp; default 300 in summit mode (DeepGMAP), ``bin_length`` in DeepSEA mode.
    mode
        ``"summit"`` or ``"deepsea"`` (see the module docstring).
    bin_length, min_overlap
        DeepSEA mode: central bin length (bp; ``length - bin_length`` must be even and >= 0)
        and the fraction of the bin that must be covered by peaks.
    min_sites
        Minimum number of sites for a site factor to be kept as a class (default 50).
    max_n_fraction
        Windows with a fraction of N bases above this are dropped (default 0.1: at most 100 N
        in a 1 kb window).
    negative_fraction
        Fraction of all-zero windows to keep, in (0, 1]; DeepGMAP used 0.25. Exactly
        ``round(negative_fraction * n)`` of a contig's ``n`` negatives are kept, chosen with a
        generator seeded by ``(seed, crc32(chrom))`` (reproducible, independent of other contigs).
    seed
        Seed for negative down-sampling.
    skip_unknown_chroms
        Ignore peaks / sites on contigs absent from the reference (e.g. genome-wide peak files
        with a one-chromosome FASTA) instead of raising; they are not counted anywhere.
    site_prefix
        Prefix for site-factor class names (e.g. ``"tf:"``), to keep them apart from peak
        classes of the same name (``tf_sites.bed`` also has a ``CTCF`` factor).

    Returns
    -------
    LabelSummary
        Counts of windows, N-dropped windows, negatives, positives per class, kept/dropped classes.

    Output
    ------
    ``windows.parquet``: one row per kept window, sorted by contig (order of ``chroms``) and
    start, columns ``chrom`` (string), ``start``, ``end`` (int64, 0-based half-open input
    window), in DeepSEA mode also ``bin_start``, ``bin_end``, and ``labels``
    (``fixed_size_list<uint8>[n_classes]``, in ``classes.json`` order; also stored in the
    Parquet metadata under ``methray.classes``). ``classes.json``: ``{"classes": [...], ...}``
    with the geometry and the summary. Both are written atomically. Read back with
    :func:`read_labels`.

    Raises
    ------
    MethrayError
        Bad parameters, no classes, missing / malformed input files, a chromosome not in the
        reference (unless ``skip_unknown_chroms``), a peak or summit past the contig end, a class
        name given twice.
    """
    ref = reference if isinstance(reference, Reference) else Reference(str(reference))
    own_ref = not isinstance(reference, Reference)
    if mode not in ("summit", "deepsea"):
        raise MethrayError(f"mode must be 'summit' or 'deepsea', got {mode!r}")
    if stride is None:
        stride = 300 if mode == "summit" else bin_length
    if length < 1 or stride < 1:
        raise MethrayError(f"length and stride must be positive, got length={length} stride={stride}")
    if mode == "deepsea":
        if not (0 < bin_length <= length) or (length - bin_length) % 2:
            raise MethrayError(f"deepsea mode needs 0 < bin_length <= length with an even difference, got bin {bin_length}, length {length}")
        if not 0 < min_overlap <= 1:
            raise MethrayError(f"min_overlap must be in (0, 1], got {min_overlap}")
        flank = (length - bin_length) // 2
        region_off, region_len = flank, bin_length
    else:
        region_off, region_len = 0, length
    if not 0 <= max_n_fraction <= 1:
        raise MethrayError(f"max_n_fraction must be in [0, 1], got {max_n_fraction}")
    if not 0 < negative_fraction <= 1:
        raise MethrayError(f"negative_fraction must be in (0, 1], got {negative_fraction}")
    chroms = list(chroms) if chroms is not None else list(ref.chroms)
    for c in chroms:
        ref.check_chrom(c, source="chroms")

    # ---- classes: (name, kind, table); kind "peak" or "point"
    classes: list[tuple[str, str, pd.DataFrame]] = []
    for name, path in (peaks or {}).items():
        classes.append((str(name), "peak", read_peaks(str(path), ref, skip_unknown_chroms=skip_unknown_chroms)))
    dropped: dict[str, int] = {}
    site_paths = [sites] if isinstance(sites, str) else list(sites or [])
    for path in site_paths:
        table = read_sites(str(path), ref, skip_unknown_chroms=skip_unknown_chroms)
        table = table[table["chrom"].isin(chroms)]
        counts = table["name"].value_counts()
        for factor in sorted(counts.index):
            n = int(counts[factor])
            if n >= min_sites:
                classes.append((site_prefix + str(factor), "point", table[table["name"] == factor]))
            else:
                dropped[site_prefix + str(factor)] = n
    if not classes:
        raise MethrayError("no classes: give peak files and/or site tables with factors of at least min_sites sites")
    names = [c[0] for c in classes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MethrayError(
            f"class name(s) given more than once (peak file and site factor?): {', '.join(dup)}; "
            "rename the peak class or set site_prefix"
        )
    n_cls = len(classes)
    by_chrom = [{str(k): g for k, g in t.groupby("chrom", sort=False)} for _, _, t in classes]

    out_path = storage.join(out_dir, WINDOWS_FILE)
    classes_path = storage.join(out_dir, CLASSES_FILE)
    summary = LabelSummary(out_path, classes_path, names, mode, length, stride, bin_length if mode == "deepsea" else None)
    positives = np.zeros(n_cls, dtype=np.int64)
    placed = np.zeros(n_cls, dtype=np.int64)

    fields = [pa.field("chrom", pa.string()), pa.field("start", pa.int64()), pa.field("end", pa.int64())]
    if mode == "deepsea":
        fields += [pa.field("bin_start", pa.int64()), pa.field("bin_end", pa.int64())]
    fields.append(pa.field("labels", pa.list_(pa.uint8(), n_cls)))
    schema = pa.schema(fields, metadata={PARQUET_CLASSES_KEY: json.dumps(names).encode()})

    storage.makedirs(out_dir)
    with storage.atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for chrom in chroms:
                starts = window_starts(ref.sizes[chrom], length, stride)
                n = len(starts)
                summary.windows_total += n
                if n == 0:
                    continue
                y = np.zeros((n, n_cls), dtype=np.uint8)
                point_hits: list[tuple[int, np.ndarray, np.ndarray]] = []
                for k, (_, kind, _) in enumerate(classes):
                    grp = by_chrom[k].get(chrom)
                    if grp is None:
                        continue
                    if kind == "peak" and mode == "deepsea":
                        s, e = merge_intervals(grp["start"].to_numpy(), grp["end"].to_numpy())
                        cov = covered_bp(s, e, starts + region_off, starts + region_off + region_len)
                        y[:, k] = cov >= min_overlap * region_len
                    else:
                        w, p = point_windows(grp["summit"].to_numpy(np.int64) - region_off, n, stride, region_len)
                        y[w, k] = 1
                        point_hits.append((k, w, p))
                keep = n_counts(ref.contig_codes(chrom), starts, length) <= max_n_fraction * length
                summary.windows_dropped_n += int(n - keep.sum())
                neg = keep & ~y.any(axis=1)
                n_neg = int(neg.sum())
                summary.negatives_total += n_neg
                if negative_fraction < 1 and n_neg:
                    rng = np.random.default_rng([seed, zlib.crc32(chrom.encode())])
                    neg_idx = np.flatnonzero(neg)
                    n_keep = int(round(negative_fraction * n_neg))
                    drop = np.setdiff1d(neg_idx, rng.choice(neg_idx, size=n_keep, replace=False))
                    keep[drop] = False
                    summary.negatives_dropped += len(drop)
                for k, w, p in point_hits:
                    placed[k] += len(np.unique(p[keep[w]]))
                y = y[keep]
                starts_k = starts[keep]
                positives += y.sum(axis=0, dtype=np.int64)
                summary.windows_written += len(starts_k)
                cols = [pa.array(np.full(len(starts_k), chrom, dtype=object), pa.string()), starts_k, starts_k + length]
                if mode == "deepsea":
                    cols += [starts_k + region_off, starts_k + region_off + region_len]
                cols.append(pa.FixedSizeListArray.from_arrays(pa.array(y.reshape(-1)), n_cls))
                writer.write_table(pa.Table.from_arrays(cols, schema=schema))
                if own_ref:
                    ref.drop_cache()
        summary.positives = {nm: int(v) for nm, v in zip(names, positives)}
        summary.unplaced = {nm: int(len(t) - placed[k]) for k, (nm, kind, t) in enumerate(classes) if kind == "point" or mode == "summit"}
        summary.classes_dropped = dropped
        meta = {
            "classes": names,
            "kinds": {nm: kind for nm, kind, _ in classes},
            "sources": {**{str(k): str(v) for k, v in (peaks or {}).items()}, "sites": [str(p) for p in site_paths]},
            "summary": summary.to_dict(),
            "params": {"chroms": chroms, "min_overlap": min_overlap, "min_sites": min_sites,
                       "max_n_fraction": max_n_fraction, "negative_fraction": negative_fraction, "seed": seed},
        }
        with storage.atomic_write(classes_path) as fh:
            json.dump(meta, fh, indent=1)
    return summary


def read_labels(out_dir: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Read a table written by :func:`build_labels`.

    Returns
    -------
    windows : pd.DataFrame
        ``chrom``, ``start``, ``end`` (and ``bin_start``, ``bin_end`` in DeepSEA mode).
    labels : np.ndarray
        ``(n_windows, n_classes) uint8``.
    classes : list[str]
        Class names (columns of ``labels``).

    Raises
    ------
    MethrayError
        If the folder has no ``windows.parquet``.
    """
    path = storage.join(out_dir, WINDOWS_FILE)
    if not storage.exists(path):
        raise MethrayError(f"{path}: label table not found (run build_labels first)")
    fs, p = storage.filesystem(path)
    with fs.open(p, "rb") as fh:
        table = pq.read_table(fh)
    classes = json.loads(table.schema.metadata[PARQUET_CLASSES_KEY])
    lab = table.column("labels").combine_chunks()
    y = lab.flatten().to_numpy(zero_copy_only=False).reshape(-1, len(classes)) if len(lab) else np.zeros((0, len(classes)), np.uint8)
    windows = table.drop_columns(["labels"]).to_pandas()
    return windows, y.astype(np.uint8, copy=False), classes


# --------------------------------------------------------------------------------------------
# Contiguous-region split
# --------------------------------------------------------------------------------------------


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
