"""Multi-label window tables for regulatory-element tasks (TF binding, open chromatin).

The genome (or the chosen contigs) is cut into fixed-length windows on a regular grid and each
window gets one 0/1 label per class. Two labelling rules are available:

``mode="summit"`` (default; DeepGMAP, Onimaru et al. 2020)
    Windows of ``length`` bp (default 1000) every ``stride`` bp (default 300). A window is
    positive for a class if it *contains* the summit of one of the class's peaks, or the centre
    of one of its sites. DeepGMAP found 1 kb windows with a 300 bp stride trained best, and that
    smaller strides or random (non-contiguous) splits overfit; see :func:`methray.regulatory.split.split_windows`.

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
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from .. import storage
from ..config import Section
from ..encoding import n_runs
from ..errors import MethrayError
from ..genome import Reference
from ..io.bed import covered_bp, merge_intervals
from .peaks import read_factor_sites, read_peaks
from .split import split_windows, write_split

if TYPE_CHECKING:
    from .config import RegulatoryConfig

WINDOWS_FILE = "windows.parquet"
CLASSES_FILE = "classes.json"
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
# Building the table: spec -> classes -> per contig (label, filter) -> Parquet
# --------------------------------------------------------------------------------------------


class LabelSpec(Section):
    """What :func:`build_labels` builds: the classes, the window grid and the window filters.

    Attributes
    ----------
    peaks
        Class name -> peak file (narrowPeak or BED); one class per file. Summit mode: positive
        if the window contains the summit (narrowPeak col 10) or centre. DeepSEA mode: positive
        if ``>= min_overlap`` of the bin lies in the union of the peaks.
    sites
        Site tables (BED4+, name column = factor; a single path is accepted). Each factor with
        at least ``min_sites`` sites on the chosen contigs becomes a class; positive if the
        window (the bin, in DeepSEA mode) contains a site centre.
    chroms
        Contigs to tile, in this order; default every contig of the reference. Peaks and sites
        on other contigs of the reference are ignored (counted in ``unplaced``).
    length
        Window (model input) length in bp.
    stride
        Grid step in bp; None: 300 in summit mode (DeepGMAP), ``bin_length`` in DeepSEA mode.
    mode
        ``"summit"`` or ``"deepsea"`` (see the module docstring).
    bin_length, min_overlap
        DeepSEA mode: central bin length (bp; ``length - bin_length`` must be even and >= 0)
        and the fraction of the bin that must be covered by peaks.
    min_sites
        Minimum number of sites for a site factor to be kept as a class.
    max_n_fraction
        Windows with a fraction of N bases above this are dropped (0.1: at most 100 N in 1 kb).
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
    """

    peaks: dict[str, str] = Field(default_factory=dict, description="class name -> narrowPeak / BED file")
    sites: list[str] = Field(default_factory=list, description="BED4+ site tables (name = factor)")
    chroms: list[str] | None = None
    length: int = Field(1000, ge=1, description="window (model input) length, bp")
    stride: int | None = Field(None, ge=1, description="grid step, bp; default 300 (summit) or bin_length (deepsea)")
    mode: Literal["summit", "deepsea"] = "summit"
    bin_length: int = Field(200, ge=1, description="deepsea mode: labelled central bin, bp")
    min_overlap: float = Field(0.5, gt=0, le=1, description="deepsea mode: fraction of the bin covered by peaks")
    min_sites: int = Field(50, ge=1)
    max_n_fraction: float = Field(0.1, ge=0, le=1)
    negative_fraction: float = Field(1.0, gt=0, le=1, description="all-zero windows kept")
    seed: int = 0
    skip_unknown_chroms: bool = False
    site_prefix: str = ""

    @field_validator("sites", mode="before")
    @classmethod
    def _one_or_more(cls, v):
        return [v] if isinstance(v, str) else v


@dataclass(frozen=True)
class Grid:
    """The window grid of a :class:`LabelSpec`: windows ``[i * stride, i * stride + length)``,
    each labelled on its region ``[start + offset, start + offset + span)`` (the whole window in
    summit mode, the central bin in DeepSEA mode). All in bp."""

    mode: str
    length: int
    stride: int
    offset: int
    span: int
    min_overlap: float

    @classmethod
    def of(cls, spec: LabelSpec) -> "Grid":
        """The grid of ``spec``.

        Raises
        ------
        MethrayError
            DeepSEA mode with a bin longer than the window or an odd flank.
        """
        if spec.mode == "deepsea":
            if not spec.bin_length <= spec.length or (spec.length - spec.bin_length) % 2:
                raise MethrayError(f"deepsea mode needs 0 < bin_length <= length with an even difference, got bin {spec.bin_length}, length {spec.length}")
            return cls("deepsea", spec.length, spec.stride or spec.bin_length, (spec.length - spec.bin_length) // 2, spec.bin_length, spec.min_overlap)
        return cls("summit", spec.length, spec.stride or 300, 0, spec.length, spec.min_overlap)


@dataclass
class LabelClass:
    """One class of the table: its name, ``kind`` (``peak``: interval file; ``point``: site
    factor) and its rows (``chrom, start, end, summit``), grouped by contig."""

    name: str
    kind: str
    table: pd.DataFrame
    by_chrom: dict[str, pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self):
        self.by_chrom = {str(k): g for k, g in self.table.groupby("chrom", sort=False)}


def read_classes(spec: LabelSpec, ref: Reference, chroms: list[str]) -> tuple[list[LabelClass], dict[str, int]]:
    """The classes of ``spec``: one per peak file, one per site factor with enough sites.

    Returns
    -------
    classes : list[LabelClass]
        Peak classes in the order of ``spec.peaks``, then site factors sorted by name.
    dropped : dict[str, int]
        Site factor -> number of its sites on ``chroms``, for factors below ``min_sites``.

    Raises
    ------
    MethrayError
        Missing / malformed files, contigs not in the reference, no class at all, or a class
        name given twice.
    """
    skip = spec.skip_unknown_chroms
    classes = [LabelClass(str(name), "peak", read_peaks(str(path), ref, skip_unknown_chroms=skip)) for name, path in spec.peaks.items()]
    dropped: dict[str, int] = {}
    for path in spec.sites:
        table = read_factor_sites(str(path), ref, skip_unknown_chroms=skip)
        table = table[table["chrom"].isin(chroms)]
        counts = table["name"].value_counts()
        for factor in sorted(counts.index):
            n, name = int(counts[factor]), spec.site_prefix + str(factor)
            if n >= spec.min_sites:
                classes.append(LabelClass(name, "point", table[table["name"] == factor]))
            else:
                dropped[name] = n
    if not classes:
        raise MethrayError("no classes: give peak files and/or site tables with factors of at least min_sites sites")
    names = [c.name for c in classes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MethrayError(
            f"class name(s) given more than once (peak file and site factor?): {', '.join(dup)}; "
            "rename the peak class or set site_prefix"
        )
    return classes, dropped


def label_windows(classes: list[LabelClass], chrom: str, starts: np.ndarray, grid: Grid) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Labels of one contig's windows.

    Parameters
    ----------
    starts
        ``(n,) int64`` window starts of the contig (:func:`window_starts`).

    Returns
    -------
    y : np.ndarray
        ``(n, K) uint8``, 1 where window i is positive for class k.
    point_hits : list of (k, window, point)
        For point-labelled classes: which windows contain which of the class's summits
        (:func:`point_windows`), to count summits that end up in no written window.
    """
    y = np.zeros((len(starts), len(classes)), dtype=np.uint8)
    point_hits = []
    for k, cls in enumerate(classes):
        grp = cls.by_chrom.get(chrom)
        if grp is None:
            continue
        if cls.kind == "peak" and grid.mode == "deepsea":
            s, e = merge_intervals(grp["start"].to_numpy(), grp["end"].to_numpy())
            cov = covered_bp(s, e, starts + grid.offset, starts + grid.offset + grid.span)
            y[:, k] = cov >= grid.min_overlap * grid.span
        else:
            w, p = point_windows(grp["summit"].to_numpy(np.int64) - grid.offset, len(starts), grid.stride, grid.span)
            y[w, k] = 1
            point_hits.append((k, w, p))
    return y, point_hits


@dataclass
class WindowFilter:
    """Which windows of a contig are kept, and why the others are not (numbers of windows)."""

    keep: np.ndarray
    dropped_n: int
    negatives: int
    negatives_dropped: int


def filter_windows(codes: np.ndarray, starts: np.ndarray, y: np.ndarray, spec: LabelSpec, chrom: str) -> WindowFilter:
    """Drop N-rich windows, then down-sample the all-zero ones (see :class:`LabelSpec`).

    Parameters
    ----------
    codes
        ``(size,) uint8`` base codes of the contig (N = 4).
    starts, y
        The contig's window starts ``(n,)`` and labels ``(n, K)``.
    """
    keep = n_counts(codes, starts, spec.length) <= spec.max_n_fraction * spec.length
    dropped_n = int(len(starts) - keep.sum())
    neg = keep & ~y.any(axis=1)
    n_neg = int(neg.sum())
    n_drop = 0
    if spec.negative_fraction < 1 and n_neg:
        rng = np.random.default_rng([spec.seed, zlib.crc32(chrom.encode())])
        neg_idx = np.flatnonzero(neg)
        n_keep = int(round(spec.negative_fraction * n_neg))
        drop = np.setdiff1d(neg_idx, rng.choice(neg_idx, size=n_keep, replace=False))
        keep[drop] = False
        n_drop = len(drop)
    return WindowFilter(keep, dropped_n, n_neg, n_drop)


def label_schema(classes: list[str], grid: Grid) -> pa.Schema:
    """Arrow schema of ``windows.parquet`` (class names in the metadata)."""
    fields = [pa.field("chrom", pa.string()), pa.field("start", pa.int64()), pa.field("end", pa.int64())]
    if grid.mode == "deepsea":
        fields += [pa.field("bin_start", pa.int64()), pa.field("bin_end", pa.int64())]
    fields.append(pa.field("labels", pa.list_(pa.uint8(), len(classes))))
    return pa.schema(fields, metadata={PARQUET_CLASSES_KEY: json.dumps(classes).encode()})


def label_rows(chrom: str, starts: np.ndarray, y: np.ndarray, grid: Grid, schema: pa.Schema) -> pa.Table:
    """One contig's kept windows as rows of ``windows.parquet``."""
    cols = [pa.array(np.full(len(starts), chrom, dtype=object), pa.string()), starts, starts + grid.length]
    if grid.mode == "deepsea":
        cols += [starts + grid.offset, starts + grid.offset + grid.span]
    cols.append(pa.FixedSizeListArray.from_arrays(pa.array(y.reshape(-1)), y.shape[1]))
    return pa.Table.from_arrays(cols, schema=schema)


def build_labels(reference: Reference | str, out_dir: str, spec: LabelSpec) -> LabelSummary:
    """Build a multi-label window table and write it as Parquet (plus ``classes.json``).

    The steps: the classes (:func:`read_classes`); then contig by contig, the window grid
    (:func:`window_starts`), the labels (:func:`label_windows`), the N filter and negative
    down-sampling (:func:`filter_windows`), and the kept rows written (:func:`label_rows`).
    Memory is bounded by one contig.

    Parameters
    ----------
    reference
        A :class:`~methray.genome.Reference` or a FASTA path.
    out_dir
        Output folder (local or ``s3://``); receives ``windows.parquet`` and ``classes.json``.
    spec
        Classes, grid and filters (:class:`LabelSpec`).

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
        Bad geometry, no classes, missing / malformed input files, a chromosome not in the
        reference (unless ``skip_unknown_chroms``), a peak or summit past the contig end, a class
        name given twice.
    """
    ref = reference if isinstance(reference, Reference) else Reference(str(reference))
    own_ref = not isinstance(reference, Reference)
    grid = Grid.of(spec)
    chroms = list(spec.chroms) if spec.chroms is not None else list(ref.chroms)
    for c in chroms:
        ref.check_chrom(c, source="chroms")
    classes, dropped = read_classes(spec, ref, chroms)
    names = [c.name for c in classes]

    out_path = storage.join(out_dir, WINDOWS_FILE)
    classes_path = storage.join(out_dir, CLASSES_FILE)
    summary = LabelSummary(out_path, classes_path, names, grid.mode, grid.length, grid.stride, grid.span if grid.mode == "deepsea" else None)
    positives = np.zeros(len(classes), dtype=np.int64)
    placed = np.zeros(len(classes), dtype=np.int64)
    schema = label_schema(names, grid)
    storage.makedirs(out_dir)
    with storage.atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for chrom in chroms:
                starts = window_starts(ref.sizes[chrom], grid.length, grid.stride)
                summary.windows_total += len(starts)
                if len(starts) == 0:
                    continue
                y, point_hits = label_windows(classes, chrom, starts, grid)
                kept = filter_windows(ref.contig_codes(chrom), starts, y, spec, chrom)
                summary.windows_dropped_n += kept.dropped_n
                summary.negatives_total += kept.negatives
                summary.negatives_dropped += kept.negatives_dropped
                for k, w, p in point_hits:
                    placed[k] += len(np.unique(p[kept.keep[w]]))
                y, starts = y[kept.keep], starts[kept.keep]
                positives += y.sum(axis=0, dtype=np.int64)
                summary.windows_written += len(starts)
                writer.write_table(label_rows(chrom, starts, y, grid, schema))
                if own_ref:
                    ref.drop_cache()
        summary.positives = {nm: int(v) for nm, v in zip(names, positives)}
        summary.unplaced = {c.name: int(len(c.table) - placed[k]) for k, c in enumerate(classes) if c.kind == "point" or grid.mode == "summit"}
        summary.classes_dropped = dropped
        meta = {
            "classes": names,
            "kinds": {c.name: c.kind for c in classes},
            "sources": {**{str(k): str(v) for k, v in spec.peaks.items()}, "sites": [str(p) for p in spec.sites]},
            "summary": summary.to_dict(),
            "params": {"chroms": chroms, "min_overlap": spec.min_overlap, "min_sites": spec.min_sites,
                       "max_n_fraction": spec.max_n_fraction, "negative_fraction": spec.negative_fraction, "seed": spec.seed},
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
# The labels step of a regulatory run
# --------------------------------------------------------------------------------------------


def make_labels(cfg: RegulatoryConfig, stride: int) -> dict:
    """Build the label table at ``stride`` and its contiguous split; returns a summary dict."""
    out = cfg.labels_dir(stride)
    summary = build_labels(cfg.reference, out, cfg.labels.model_copy(update={"stride": stride}))
    windows, _, _ = read_labels(out)
    sp = cfg.split
    inside_fraction = min(sp.inside_windows / max(len(windows), 1), 0.5 * (1 - sp.valid_fraction - sp.test_fraction))
    split = split_windows(windows, valid_fraction=sp.valid_fraction, test_fraction=sp.test_fraction,
                         inside_fraction=inside_fraction, gap=sp.gap, seed=sp.seed)
    write_split(split, out)
    return {"summary": summary, "split": split["split"].value_counts().to_dict(), "inside": int(split["inside"].sum())}
