"""Every CpG of a reference genome, as a Parquet table partitioned by chromosome.

This is the site list that genome-wide scoring feeds to Ray Data.

Conventions
-----------
- A CpG is a C followed by a G on the + strand, case-insensitive (soft-masked lower case
  counts). Its position ``pos`` is the 0-based coordinate of the C; the G is at ``pos + 1``.
  Each CpG is listed once (the - strand C at ``pos + 1`` is the same site).
- ``n_fraction`` is the fraction of the site's window (a :class:`~methray.encoding.WindowSpec`,
  by default :data:`DEFAULT_WINDOW`: 1001 bp centred on the C, ``[pos - 500, pos + 501)``, the
  largest model window) that is not A/C/G/T. Bases past a contig end count as N, exactly as
  :func:`~methray.encoding.gather_windows` pads them.
- ``excluded`` is ``n_fraction > max_n_fraction`` (default 0.5: the window is mostly N). Such
  sites stay in the table, flagged and counted; the scorer decides what to do with them.

Layout
------
::

    out_dir/
      _summary.json                  # written last: counts per chrom, settings, seconds
      chrom=chr1/part-00000.parquet  # columns pos, in_cpg_island, n_fraction, excluded
      chrom=chr1/part-00001.parquet  # at most ``max_rows_per_file`` rows each, sorted by pos
      ...

``chrom`` is the hive partition key: it lives in the directory name (URI-encoded), not inside
the files. Read the table with :func:`read_cpgs`, with ``ray.data.read_parquet(out_dir)`` (hive
partitioning, string values and ``.parquet``-only listing are its defaults), or with pyarrow
using ``ds.partitioning(pa.schema([("chrom", pa.string())]), flavor="hive")`` (pyarrow would
otherwise infer ``chrom=1`` as an integer). Contigs without a CpG have no directory (their
count, 0, is in the summary).

A local ``out_dir`` is built in a temporary directory beside it and renamed into place when
complete, so it never exists half-written. On ``s3://`` every object is uploaded whole, and
``_summary.json`` is written last: a table without it is incomplete.

Cost: hg19 chr22 (51.3 Mb, 21.6 Mb of it sequence) gives 336,904 CpGs in about 0.8 s on one
core, peak memory a few times the contig length in bytes.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pydantic import Field

from . import storage
from .config import JobConfig, load_job_config, resolve_path
from .encoding import MAX_FLANK, WindowSpec, n_runs
from .errors import MethrayError
from .genome import Reference
from .io.bed import IntervalIndex, covered_bp, load_islands

DEFAULT_WINDOW = WindowSpec(1001, exclude_cpg=False)
"""The window whose N content flags a site: 1001 bp centred on the C (the largest model window)."""

DEFAULT_MAX_ROWS_PER_FILE = 250_000
"""Rows per Parquet file: hg38's ~28 M CpGs become ~120 files, enough parallelism for Ray Data."""

SUMMARY_NAME = "_summary.json"
PART_SCHEMA = pa.schema(
    [
        ("pos", pa.int64()),
        ("in_cpg_island", pa.bool_()),
        ("n_fraction", pa.float32()),
        ("excluded", pa.bool_()),
    ]
)
"""Columns inside each part file (``chrom`` comes from the partition directory)."""


@dataclass
class ChromCounts:
    """Counts for one contig: CpGs, CpGs inside islands, excluded (mostly-N window) CpGs, files."""

    cpgs: int = 0
    in_islands: int = 0
    excluded: int = 0
    files: int = 0


@dataclass
class CpgSummary:
    """What :func:`enumerate_cpgs` wrote.

    Attributes
    ----------
    out_dir : str
        The table's directory.
    per_chrom : dict[str, ChromCounts]
        Counts per contig, in reference order (every enumerated contig, also those with 0 CpGs).
    window_length, window_exclude_cpg : int, bool
        The window used for ``n_fraction``.
    max_n_fraction : float
        Sites with ``n_fraction`` above it are ``excluded``.
    seconds : float
        Wall-clock time of the enumeration.
    """

    out_dir: str
    per_chrom: dict[str, ChromCounts] = field(default_factory=dict)
    window_length: int = DEFAULT_WINDOW.length
    window_exclude_cpg: bool = DEFAULT_WINDOW.exclude_cpg
    max_n_fraction: float = 0.5
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """CpGs over all contigs."""
        return sum(c.cpgs for c in self.per_chrom.values())

    @property
    def in_islands(self) -> int:
        """CpGs inside CpG islands over all contigs."""
        return sum(c.in_islands for c in self.per_chrom.values())

    @property
    def excluded(self) -> int:
        """Excluded (mostly-N window) CpGs over all contigs."""
        return sum(c.excluded for c in self.per_chrom.values())

    @property
    def chroms(self) -> list[str]:
        """Enumerated contigs in reference order."""
        return list(self.per_chrom)

    def to_dict(self) -> dict:
        """JSON-ready form (what ``_summary.json`` holds)."""
        d = asdict(self)
        d.update(total=self.total, in_islands=self.in_islands, excluded=self.excluded)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CpgSummary":
        """Inverse of :meth:`to_dict`."""
        return cls(
            out_dir=d["out_dir"],
            per_chrom={c: ChromCounts(**v) for c, v in d["per_chrom"].items()},
            window_length=int(d["window_length"]),
            window_exclude_cpg=bool(d["window_exclude_cpg"]),
            max_n_fraction=float(d["max_n_fraction"]),
            seconds=float(d["seconds"]),
        )


def find_cpgs(codes: np.ndarray) -> np.ndarray:
    """Positions of the CpGs in one contig.

    Parameters
    ----------
    codes
        The contig's base codes, unpadded, ``(size,) uint8`` (C = 1, G = 2; see
        :mod:`methray.encoding`).

    Returns
    -------
    np.ndarray
        ``(n_cpgs,) int64`` sorted 0-based positions of the C of every ``CG`` (+ strand).
    """
    codes = np.asarray(codes)
    return np.flatnonzero((codes[:-1] == 1) & (codes[1:] == 2)).astype(np.int64)


def window_n_counts(padded_codes: np.ndarray, positions: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Number of N (non-ACGT) bases in each site's window, without gathering the windows.

    Each contiguous segment of the window counts the bases it shares with the runs of N
    (:func:`~methray.encoding.n_runs`, :func:`~methray.io.bed.covered_bp`), so memory is
    O(runs + sites) instead of an integer per base (1 GB for chr1). Equal to
    ``(gather_windows(padded_codes, positions, spec) == N_CODE).sum(1)``.

    Parameters
    ----------
    padded_codes
        The contig's codes padded by :data:`~methray.encoding.MAX_FLANK` N on each side,
        ``(size + 2*MAX_FLANK,) uint8`` (:meth:`methray.genome.Reference.codes`).
    positions
        0-based CpG positions (the C), ``(n,)`` integer, each in ``[0, size)``.
    spec
        The window (its offsets may leave out the CpG, i.e. be two contiguous segments).

    Returns
    -------
    np.ndarray
        ``(n,) int64`` counts in ``[0, spec.length]``.
    """
    run_starts, run_ends = n_runs(padded_codes)
    offsets = spec.offsets()
    breaks = np.flatnonzero(np.diff(offsets) != 1) + 1
    centre = np.asarray(positions, dtype=np.int64) + MAX_FLANK
    counts = np.zeros(centre.shape, dtype=np.int64)
    for seg in np.split(offsets, breaks):  # 1 segment, or 2 when the CpG is left out
        counts += covered_bp(run_starts, run_ends, centre + seg[0], centre + seg[-1] + 1)
    return counts


def _as_window(window: WindowSpec | int) -> WindowSpec:
    if isinstance(window, WindowSpec):
        return window
    try:
        return WindowSpec(int(window), exclude_cpg=False)
    except (TypeError, ValueError) as exc:
        raise MethrayError(f"window: expected a WindowSpec or a length in 1..{2 * MAX_FLANK} bp, got {window!r}") from exc


def partition_dir(chrom: str) -> str:
    """Hive directory name of a contig, ``chrom=<name>`` with the name URI-encoded."""
    return "chrom=" + quote(chrom, safe="")


def _write_part(table: pa.Table, path: str) -> None:
    # One whole file per call: a temp name + rename locally, one upload on s3.
    with storage.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def enumerate_cpgs(
    reference: str | Reference,
    out_dir: str,
    *,
    cpg_islands: str | IntervalIndex | None = None,
    window: WindowSpec | int = DEFAULT_WINDOW,
    max_n_fraction: float = 0.5,
    chroms: list[str] | None = None,
    max_rows_per_file: int = DEFAULT_MAX_ROWS_PER_FILE,
    overwrite: bool = False,
) -> CpgSummary:
    """Find every CpG of a reference and write the Parquet site table (see the module doc).

    Streams contig by contig: each contig is read, its CpGs found and written, and its codes
    dropped before the next, so memory is bounded by the largest contig (a few times its
    length in bytes), not by the genome.

    Parameters
    ----------
    reference
        FASTA path (local or ``s3://``, indexed) or an open :class:`~methray.genome.Reference`.
    out_dir
        Output directory, local or ``s3://``.
    cpg_islands
        CpG island BED (path) or an :class:`~methray.io.bed.IntervalIndex`; sets
        ``in_cpg_island`` (C inside an island, 0-based half-open). ``None``: all False.
    window
        Window whose N content gives ``n_fraction``: a WindowSpec, or a length in bp for a
        window centred on the C. Default :data:`DEFAULT_WINDOW` (1001 bp centred).
    max_n_fraction
        Sites with ``n_fraction > max_n_fraction`` get ``excluded = True``; in ``[0, 1]``.
    chroms
        Contigs to enumerate (default: all); written in reference order whatever the order given.
    max_rows_per_file
        At most this many rows per Parquet file (>= 1).
    overwrite
        Replace an existing ``out_dir``. Locally the old one is swapped out only once the new
        one is complete; on ``s3://`` the old prefix is deleted first.

    Returns
    -------
    CpgSummary
        Counts per contig (CpGs, in islands, excluded, files), totals and seconds; also
        written to ``out_dir/_summary.json``.

    Raises
    ------
    MethrayError
        Missing or unreadable FASTA or island BED, unknown contig in ``chroms``, bad
        ``window`` / ``max_n_fraction`` / ``max_rows_per_file``, or ``out_dir`` exists and
        ``overwrite`` is False.
    """
    t0 = time.perf_counter()
    spec = _as_window(window)
    if not 0.0 <= float(max_n_fraction) <= 1.0:
        raise MethrayError(f"max_n_fraction: expected a fraction in [0, 1], got {max_n_fraction!r}")
    if int(max_rows_per_file) < 1:
        raise MethrayError(f"max_rows_per_file: expected >= 1, got {max_rows_per_file!r}")
    ref = reference if isinstance(reference, Reference) else Reference(str(reference))
    if chroms is not None:
        for c in chroms:
            ref.check_chrom(c, source="chroms")
        wanted = set(chroms)
        chroms = [c for c in ref.chroms if c in wanted]
    else:
        chroms = list(ref.chroms)
    islands = cpg_islands if isinstance(cpg_islands, IntervalIndex) else load_islands(cpg_islands)

    out_dir = str(out_dir).rstrip("/") if storage.is_remote(out_dir) else str(Path(out_dir))
    if storage.exists(out_dir):
        if not overwrite:
            raise MethrayError(f"{out_dir}: output already exists (pass overwrite=True to replace it)")
        if storage.is_remote(out_dir):
            fs, p = storage.filesystem(out_dir)
            fs.rm(p, recursive=True)

    if storage.is_remote(out_dir):
        work = out_dir
    else:
        work = storage.staging_dir(out_dir)

    summary = CpgSummary(
        out_dir=out_dir,
        window_length=spec.length,
        window_exclude_cpg=spec.exclude_cpg,
        max_n_fraction=float(max_n_fraction),
    )
    try:
        for chrom in chroms:
            summary.per_chrom[chrom] = _enumerate_contig(
                ref, chrom, islands, spec, float(max_n_fraction), work, int(max_rows_per_file)
            )
            ref.drop_cache()  # bound memory by one contig
        summary.seconds = round(time.perf_counter() - t0, 3)
        with storage.atomic_write(storage.join(work, SUMMARY_NAME)) as fh:
            json.dump(summary.to_dict(), fh, indent=1)
        if not storage.is_remote(out_dir):
            storage.replace_dir(work, out_dir)
    except BaseException:
        if not storage.is_remote(out_dir):
            shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


def _enumerate_contig(
    ref: Reference,
    chrom: str,
    islands: IntervalIndex,
    spec: WindowSpec,
    max_n_fraction: float,
    work: str,
    max_rows: int,
) -> ChromCounts:
    """Find, annotate and write one contig's CpGs; returns its counts."""
    padded = ref.codes(chrom)
    pos = find_cpgs(padded[MAX_FLANK:-MAX_FLANK])
    n_frac = window_n_counts(padded, pos, spec) / spec.length  # float64 for the comparison
    excluded = n_frac > max_n_fraction
    in_island = islands.contains(chrom, pos)
    counts = ChromCounts(cpgs=int(pos.size), in_islands=int(in_island.sum()), excluded=int(excluded.sum()))
    for i, lo in enumerate(range(0, pos.size, max_rows)):
        sl = slice(lo, lo + max_rows)
        table = pa.table(
            {
                "pos": pos[sl],
                "in_cpg_island": in_island[sl],
                "n_fraction": n_frac[sl].astype(np.float32),
                "excluded": excluded[sl],
            },
            schema=PART_SCHEMA,
        )
        _write_part(table, storage.join(work, partition_dir(chrom), f"part-{i:05d}.parquet"))
        counts.files += 1
    return counts


def load_summary(path: str) -> CpgSummary:
    """The :class:`CpgSummary` of a CpG table directory.

    Raises
    ------
    MethrayError
        If ``path`` has no ``_summary.json`` (not a CpG table, or one still being written).
    """
    spath = storage.join(str(path), SUMMARY_NAME)
    if not storage.exists(spath):
        raise MethrayError(f"{path}: not a complete CpG table (no {SUMMARY_NAME}; run `methray cpgs` to write one)")
    fs, p = storage.filesystem(spath)
    with fs.open(p, "r") as fh:
        return CpgSummary.from_dict(json.load(fh))


def read_cpgs(path: str, chrom: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CpG table written by :func:`enumerate_cpgs` into pandas.

    Parameters
    ----------
    path
        The table's directory, local or ``s3://``.
    chrom
        Read only this contig (only its partition's files are opened).
    columns
        Columns besides ``chrom`` to read (default all of ``pos, in_cpg_island, n_fraction,
        excluded``).

    Returns
    -------
    pd.DataFrame
        ``chrom`` (str), ``pos`` (int64, 0-based C), ``in_cpg_island`` (bool), ``n_fraction``
        (float32), ``excluded`` (bool); sorted by contig in reference order, then ``pos``.

    Raises
    ------
    MethrayError
        If the table is incomplete or missing, ``chrom`` is not one of its contigs, or a
        column is unknown.
    """
    summary = load_summary(path)
    cols = list(columns) if columns is not None else PART_SCHEMA.names
    unknown = [c for c in cols if c not in PART_SCHEMA.names]
    if unknown:
        raise MethrayError(f"{path}: unknown CpG table column(s) {unknown}; columns are {['chrom', *PART_SCHEMA.names]}")
    if chrom is not None and chrom not in summary.per_chrom:
        raise MethrayError(f"{path}: chromosome {chrom!r} is not in this CpG table (has {', '.join(summary.chroms[:5])}...)")
    frames = []
    for c in [chrom] if chrom is not None else summary.chroms:
        n_files = summary.per_chrom[c].files
        parts = [storage.join(str(path), partition_dir(c), f"part-{i:05d}.parquet") for i in range(n_files)]
        for part in parts:
            fs, p = storage.filesystem(part)
            with fs.open(p, "rb") as fh:
                t = pq.read_table(fh, columns=cols)
            df = t.to_pandas()
            df.insert(0, "chrom", c)
            frames.append(df)
    if not frames:
        empty = {name: pd.Series([], dtype=PART_SCHEMA.field(name).type.to_pandas_dtype()) for name in cols}
        return pd.DataFrame({"chrom": pd.Series([], dtype=str), **empty})
    # Parts are written in (reference order, pos) order, so concatenation is already sorted.
    return pd.concat(frames, ignore_index=True)


def chrom_from_partition(dirname: str) -> str:
    """Inverse of :func:`partition_dir` (``chrom=chrUn%2A`` -> ``chrUn*``)."""
    if not dirname.startswith("chrom="):
        raise ValueError(f"not a chrom partition directory: {dirname!r}")
    return unquote(dirname[len("chrom=") :])



class CpgsConfig(JobConfig):
    """The config of ``methray cpgs``: every CpG of ``reference`` into ``out_dir``.

    The common job header (:class:`methray.config.JobConfig`: relative ``reference`` and
    ``cpg_islands`` resolved against ``data_dir``, ``data_dir`` and ``out_dir`` against the
    current directory) plus the keys below.
    """

    run_name: str = "cpgs"
    out_dir: str = Field("runs/cpgs", description="the CpG table directory")
    cpg_islands: str | None = Field(None, description="CpG island BED (sets in_cpg_island); relative to data_dir")
    max_n_fraction: float = Field(0.5, ge=0, le=1, description="flag CpGs whose 1001 bp window has more N than this")
    chroms: list[str] | None = Field(None, description="contigs to enumerate (default all)")
    overwrite: bool = Field(False, description="replace an existing table")

    def resolve_inputs(self, data_dir: str, cwd: str) -> None:
        self.cpg_islands = resolve_path(self.cpg_islands, data_dir)


def load_cpgs_config(path: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> CpgsConfig:
    """Load, validate and resolve a :class:`CpgsConfig` (YAML file and/or ``--set`` overrides).

    Raises
    ------
    MethrayError
        Missing file, YAML error, unknown key or wrong type.
    """
    return load_job_config(CpgsConfig, path, overrides, data)
