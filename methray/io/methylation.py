"""Readers of methylation calls: one per caller's format, recognised by content, streamed.

Every reader turns its file into chunks of rows in methray's convention (one row per measured
cytosine, at most :data:`methray.io.text.CHUNK_ROWS` rows per chunk):

========  =======  ===========================================================
column    dtype    meaning
========  =======  ===========================================================
chrom     str      contig name as in the file (mapped to the reference in prepare)
pos       int64    0-based position of the measured C (the G of the CpG for a - strand C)
strand    int8     +1 / -1 as stated by the file; 0 when the format has no strand
n_meth    float64  methylated read count (NaN when the format has no counts)
n_total   float64  read coverage (NaN when the format has no counts)
beta      float64  fraction methylated, 0..1
line      int64    1-based line number in the file (for error messages)
========  =======  ===========================================================

Rows of another context (CHG, CHH), of another modification than 5mC (modkit ``h``, ``a``,
...) and rows without coverage are counted in :class:`ReadStats` and dropped here; the
reference check, strand assignment and strand merging happen in :mod:`methray.prepare`.

Formats (README "Input formats" has the table with the tools that write each):

``bismark_cov``     chrom, start, end, %, n_meth, n_unmeth; 1-based, start == end.
``bismark_report``  chrom, pos, strand, n_meth, n_unmeth, context, trinucleotide; 1-based.
``bedmethyl``       modkit (18 columns) or ENCODE (11 columns) bedMethyl; 0-based.
``methyldackel``    track line; chrom, start, end, % (integer), n_meth, n_unmeth; 0-based.
``cgmap``           chrom, C/G, pos, context, dinucleotide, level, n_meth, n_total; 1-based.
``allc``            chrom, pos, strand, context, n_meth, n_total, flag; optional header; 1-based.
``bsmap``           header; chr, pos, strand, context, ratio, eff_CT, C, CT, ...; 1-based.
``bedgraph``        track line; chrom, start, end, value; 0-based.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from ..errors import MethrayError
from .text import HEADER_PREFIXES, check_rows, head_lines, iter_chunks, parse_float, parse_int

FORMATS = ("bismark_cov", "bismark_report", "bedmethyl", "methyldackel", "cgmap", "allc", "bsmap", "bedgraph")
VALUE_SCALES = ("percent", "fraction")
COLUMNS = ["chrom", "pos", "strand", "n_meth", "n_total", "beta", "line"]

# What each format looks like, for the error that lists them when detection fails.
SHAPES = {
    "bismark_cov": "6 columns, start == end (1-based)",
    "bismark_report": "7 columns: ..., strand, n_meth, n_unmeth, CG/CHG/CHH, trinucleotide",
    "bedmethyl": "BED9 + 9 counts (modkit, 18 columns) or BED9 + coverage, % (ENCODE, 11 columns)",
    "methyldackel": "track line; 6 columns, end == start + 1 (0-based)",
    "cgmap": "8 columns: chrom, C/G, pos, context, dinucleotide, level, n_meth, n_total",
    "allc": "7 columns: chrom, pos, strand, context (CGA...), n_meth, n_total, 0/1",
    "bsmap": "header 'chr pos strand context ratio ...'; 12 columns",
    "bedgraph": "4 columns: chrom, start, end, value (0-based)",
}
ALLC_HEADER = ("chr", "pos", "strand", "mc_class", "mc_count", "total", "methylated")
BSMAP_HEADER = ("chr", "pos", "strand", "context", "ratio", "eff_ct_count", "c_count", "ct_count")
_STRANDS = {"+": 1, "-": -1, ".": 0, "*": 0}


@dataclass
class ReadOptions:
    """How to read one tissue's file (the tissue's config fields of the same names).

    Attributes
    ----------
    value_scale
        ``percent`` (0-100, default) or ``fraction`` (0-1): the scale of the % column of
        ``bismark_cov``, ``methyldackel``, ``bedmethyl`` and of a ``bedgraph``'s value.
    modkit_5hmc
        ``drop`` (default): modkit 5hmC reads count as not 5mC-methylated; ``add``: 5hmC is
        added to 5mC (``n_meth = N_mod + N_other_mod`` of the ``m`` row).
    """

    value_scale: str = "percent"
    modkit_5hmc: str = "drop"


@dataclass
class ReadStats:
    """What a reader saw and dropped (numbers of rows)."""

    format: str
    detected: bool
    rows: int = 0  # data rows in the file
    other_context: int = 0  # CHG / CHH rows (or a report row whose trinucleotide is not CG..)
    other_modification: int = 0  # modkit rows for a modification other than 5mC
    zero_coverage: int = 0  # rows with no reads (CpG reports list every CpG of the genome)
    # the scale check needs the whole file: is every % value in [0, 1] with some strictly inside?
    percent_max: float = float("-inf")
    percent_fractional: bool = False
    has_percent: bool = False


@dataclass
class Sniffed:
    """What the first lines of a file say about its layout."""

    skip: int  # leading lines that are not data (track / browser / # / a header of names)
    header: str | None  # the column-name line among them, if any
    track: bool
    first: list[str]  # the first data line, split on tabs
    sep: str = "\t"
    first_line_no: int = 1


def sniff(path: str) -> Sniffed:
    """Read the first lines: skipped lines, a header of column names, the first data row.

    Raises
    ------
    MethrayError
        Missing, empty or binary file, broken gzip, or no data row in the first lines.
    """
    lines = head_lines(path)
    skip, header, track = 0, None, False
    for raw in lines:
        if raw.startswith(HEADER_PREFIXES) or not raw.strip():
            track |= raw.startswith("track")
            skip += 1
            continue
        fields = raw.split("\t")
        if not pd.to_numeric(pd.Series(fields), errors="coerce").notna().any():
            header = raw  # a line of names: no number in it
            skip += 1
            continue
        sep = "\t"
        if 10 <= len(fields) < 18 and len(raw.split()) == 18:  # modkit without --only-tabs: spaces after field 10
            sep, fields = r"\s+", raw.split()
        return Sniffed(skip, header, track, fields, sep, skip + 1)
    if len(lines) < 50:
        raise MethrayError(f"{path}: no data rows" + (" (only header lines)" if lines else " (empty file)"))
    raise MethrayError(f"{path}: no data row in the first 50 lines")


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def detect_format(path: str, sniffed: Sniffed | None = None) -> str:
    """Recognise the format of a methylation file from its first lines (not its name).

    Uses the column count, a header of column names, a ``track`` line, the strand and context
    columns and the start / end difference (0 for Bismark coverage, 1 for 0-based files).

    Raises
    ------
    MethrayError
        The content fits no format: the message lists the formats and what was seen.
    """
    s = sniffed or sniff(path)
    f, n = s.first, len(s.first)
    names = tuple(x.strip().lower() for x in (s.header or "").split())
    strand = n > 2 and f[2] in ("+", "-")
    if names[:3] == ("chr", "pos", "strand"):
        if names[3:4] == ("context",) and n >= 8:
            return "bsmap"
        if names[3:4] == ("mc_class",):
            return "allc"
    if n == 4:
        return "bedgraph"
    if n == 6 and _int(f[1]) is not None and _int(f[2]) is not None:
        width = _int(f[2]) - _int(f[1])
        if width == 0:
            return "bismark_cov"
        if width == 1:
            return "methyldackel"
    if n in (6, 7) and strand and f[5] in ("CG", "CHG", "CHH"):
        return "bismark_report"
    if n == 7 and strand and re.fullmatch(r"[ACGTNH]{2,3}", f[3]) and f[6] in ("0", "1"):
        return "allc"
    if n == 8 and f[1] in ("C", "G"):
        return "cgmap"
    if n >= 10 and strand and re.fullmatch(r"[ACGTNH]{2,5}", f[3]):
        return "bsmap"
    if n in (11, 18) and n > 5 and f[5] in ("+", "-", "."):
        return "bedmethyl"
    seen = "\t".join(f)[:80]
    shapes = "; ".join(f"{k} ({v})" for k, v in SHAPES.items())
    raise MethrayError(
        f"{path}:{s.first_line_no}: cannot tell the methylation format from the content ({n} columns: {seen!r}); "
        f"expected one of: {shapes}; or set format: in the tissue's config"
    )


# --- one converter per format: a chunk of str columns -> the common columns ---------------


def _counts(path, c, col_m, col_u=None, col_total=None, name_m="n_meth", name_2="n_unmeth"):
    m = parse_int(path, c, col_m, name_m)
    if col_total is not None:
        total = parse_int(path, c, col_total, name_2)
        check_rows(path, c, m > total, f"{name_m} <= {name_2}")
    else:
        u = parse_int(path, c, col_u, name_2)
        total = m + u
        check_rows(path, c, total < m, "counts whose sum fits in int64")
    return m, total


def _percent(path, c, col, opts: ReadOptions, stats: ReadStats, name="percent") -> np.ndarray:
    v = parse_float(path, c, col, name)
    top = 100.0 if opts.value_scale == "percent" else 1.0
    check_rows(path, c, (v < 0) | (v > top), f"a methylation {opts.value_scale} in 0..{top:g} in column '{name}' (value_scale: {opts.value_scale})")
    stats.has_percent = True
    if len(v):
        stats.percent_max = max(stats.percent_max, float(v.max()))
        stats.percent_fractional |= bool(((v > 0) & (v < 1)).any())
    return v / top


def _strand(path, c, col) -> np.ndarray:
    s = c[col].map(_STRANDS)
    check_rows(path, c, s.isna().to_numpy(), "a strand (+, - or .) in column 'strand'")
    return s.to_numpy(np.int8)


def _frame(c, chrom, pos, strand, n_meth, n_total, beta) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "chrom": chrom.to_numpy(dtype=object) if isinstance(chrom, pd.Series) else chrom,
            "pos": np.asarray(pos, np.int64),
            "strand": np.broadcast_to(np.asarray(strand, np.int8), len(c)).copy(),
            "n_meth": np.asarray(n_meth, np.float64),
            "n_total": np.asarray(n_total, np.float64),
            "beta": np.asarray(beta, np.float64),
            "line": c["line"].to_numpy(np.int64),
        }
    )


def _keep(df: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    return df if keep.all() else df[keep]


def _covered(df: pd.DataFrame, stats: ReadStats) -> pd.DataFrame:
    zero = (df["n_total"] == 0).to_numpy()
    stats.zero_coverage += int(zero.sum())
    return _keep(df, ~zero)


def _ratio(m, total):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, m / np.maximum(total, 1), np.nan)


def read_bismark_cov(path, c, opts, stats):
    start = parse_int(path, c, 1, "start", minimum=1)
    end = parse_int(path, c, 2, "end", minimum=1)
    check_rows(path, c, end < start, "end >= start (Bismark coverage, 1-based)")
    _percent(path, c, 3, opts, stats)
    m, total = _counts(path, c, 4, 5)
    return _covered(_frame(c, c[0], start - 1, 0, m, total, _ratio(m, total)), stats)


def read_bismark_report(path, c, opts, stats):
    pos = parse_int(path, c, 1, "position", minimum=1)
    strand = _strand(path, c, 2)
    m, total = _counts(path, c, 3, 4)
    context = c[5].to_numpy(dtype=str)
    cg = context == "CG"
    if c.shape[1] > 7:  # the trinucleotide column (optional)
        tri = c[6].astype(str)
        cg &= (tri.eq("") | tri.str.upper().str.startswith("CG")).to_numpy()
    stats.other_context += int((~cg).sum())
    df = _frame(c, c[0], pos - 1, strand, m, total, _ratio(m, total))
    return _covered(_keep(df, cg), stats)


def read_bedmethyl(path, c, opts, stats):
    start = parse_int(path, c, 1, "start")
    end = parse_int(path, c, 2, "end")
    check_rows(path, c, end <= start, "end > start (bedMethyl, 0-based half-open)")
    strand = _strand(path, c, 5)
    if c.shape[1] - 1 >= 18:  # modkit: code, ..., N_valid_cov, % modified, N_mod, N_canonical, N_other_mod, ...
        code = c[3].to_numpy(dtype=str)
        total = parse_int(path, c, 9, "valid_coverage")
        _percent(path, c, 10, opts, stats, "percent_modified")
        n_mod = parse_int(path, c, 11, "n_mod")
        n_other = parse_int(path, c, 13, "n_other_mod")
        m = n_mod + n_other if opts.modkit_5hmc == "add" else n_mod
        check_rows(path, c, m > total, "n_mod <= valid coverage")
        five_mc = code == "m"
        stats.other_modification += int((~five_mc).sum())
        df = _keep(_frame(c, c[0], start, strand, m, total, _ratio(m, total)), five_mc)
    else:  # ENCODE bedRrbs: BED9, read count, % methylated (an integer): counts rounded back
        total = parse_int(path, c, 9, "read_count")
        beta = _percent(path, c, 10, opts, stats, "percent_methylated")
        m = np.rint(total * beta)
        df = _frame(c, c[0], start, strand, m, total, _ratio(m, total))
    return _covered(df, stats)


def read_methyldackel(path, c, opts, stats):
    start = parse_int(path, c, 1, "start")
    end = parse_int(path, c, 2, "end")
    check_rows(path, c, end <= start, "end > start (MethylDackel bedGraph, 0-based half-open)")
    _percent(path, c, 3, opts, stats)
    m, total = _counts(path, c, 4, 5)
    return _covered(_frame(c, c[0], start, 0, m, total, _ratio(m, total)), stats)


def read_cgmap(path, c, opts, stats):
    nuc = c[1].map({"C": 1, "G": -1})
    check_rows(path, c, nuc.isna().to_numpy(), "C or G in column 2 (the strand's base, CGmap)")
    pos = parse_int(path, c, 2, "position", minimum=1)
    level = parse_float(path, c, 5, "level")
    check_rows(path, c, (level < 0) | (level > 1), "a methylation level in 0..1 in column 'level'")
    m, total = _counts(path, c, 6, col_total=7, name_m="n_meth", name_2="n_total")
    cg = (c[3] == "CG").to_numpy()
    stats.other_context += int((~cg).sum())
    df = _frame(c, c[0], pos - 1, nuc.to_numpy(np.int8), m, total, _ratio(m, total))
    return _covered(_keep(df, cg), stats)


def read_allc(path, c, opts, stats):
    pos = parse_int(path, c, 1, "pos", minimum=1)
    strand = _strand(path, c, 2)
    m, total = _counts(path, c, 4, col_total=5, name_m="mc_count", name_2="total")
    cg = c[3].astype(str).str.upper().str.startswith("CG").to_numpy()
    stats.other_context += int((~cg).sum())
    df = _frame(c, c[0], pos - 1, strand, m, total, _ratio(m, total))
    return _covered(_keep(df, cg), stats)


def read_bsmap(path, c, opts, stats):
    pos = parse_int(path, c, 1, "pos", minimum=1)
    strand = _strand(path, c, 2)
    ctx = c[3].astype(str).str.upper()
    # methratio.py writes the 5 bases around the C (C in the middle); labels CG/CHG/CHH also pass
    cg = (ctx.eq("CG") | ((ctx.str.len() == 5) & (ctx.str[2:4] == "CG"))).to_numpy()
    ratio = parse_float(path, c, 4, "ratio")
    check_rows(path, c, (ratio < 0) | (ratio > 1), "a methylation ratio in 0..1 in column 'ratio'")
    m, total = _counts(path, c, 6, col_total=7, name_m="C_count", name_2="CT_count")
    stats.other_context += int((~cg).sum())
    df = _frame(c, c[0], pos - 1, strand, m, total, _ratio(m, total))
    return _covered(_keep(df, cg), stats)


def read_bedgraph(path, c, opts, stats):
    start = parse_int(path, c, 1, "start")
    end = parse_int(path, c, 2, "end")
    check_rows(path, c, end <= start, "end > start (bedGraph, 0-based half-open)")
    beta = _percent(path, c, 3, opts, stats, "value")
    return _frame(c, c[0], start, 0, np.nan, np.nan, beta)


# columns a data row needs (the first data line decides how many it has)
_READERS: dict[str, tuple[Callable, int]] = {
    "bismark_cov": (read_bismark_cov, 6),
    "bismark_report": (read_bismark_report, 6),
    "bedmethyl": (read_bedmethyl, 11),
    "methyldackel": (read_methyldackel, 6),
    "cgmap": (read_cgmap, 8),
    "allc": (read_allc, 6),
    "bsmap": (read_bsmap, 8),
    "bedgraph": (read_bedgraph, 4),
}
_HEADERS_ALLOWED = ("allc", "bsmap")


@dataclass
class MethylationReader:
    """A methylation file opened for streaming: its format (given or detected) and counts.

    Parameters
    ----------
    path
        Local or ``s3://`` path; gzip / bgzip recognised by content.
    fmt
        One of :data:`FORMATS`, or None to recognise it from the first lines.
    options
        :class:`ReadOptions`.

    Raises
    ------
    MethrayError
        Missing, empty, binary or broken file; unknown or unrecognisable format; a column-name
        header where the format has none.
    """

    path: str
    fmt: str | None = None
    options: ReadOptions = field(default_factory=ReadOptions)

    def __post_init__(self):
        self.path = str(self.path)
        if self.fmt is not None and self.fmt not in FORMATS:
            raise MethrayError(f"{self.path}: unknown methylation format {self.fmt!r}; expected one of {', '.join(FORMATS)}")
        if self.options.value_scale not in VALUE_SCALES:
            raise MethrayError(f"{self.path}: value_scale {self.options.value_scale!r}; expected one of {', '.join(VALUE_SCALES)}")
        self.sniffed = sniff(self.path)
        detected = self.fmt is None
        self.format = self.fmt or detect_format(self.path, self.sniffed)
        self.stats = ReadStats(self.format, detected)
        if self.sniffed.header is not None and self.format not in _HEADERS_ALLOWED:
            line = self.sniffed.skip
            raise MethrayError(f"{self.path}:{line}: expected a data row ({self.format} has no header), found a header line ({self.sniffed.header[:60]!r})")
        _, need = _READERS[self.format]
        if len(self.sniffed.first) < need:
            raise MethrayError(
                f"{self.path}:{self.sniffed.first_line_no}: expected at least {need} columns for {self.format} ({SHAPES[self.format]}), "
                f"found {len(self.sniffed.first)}"
            )

    def chunks(self, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
        """Yield the file's kept rows in chunks (columns :data:`COLUMNS`).

        Raises
        ------
        MethrayError
            A bad row (with its line), a broken stream, no data rows, or a % column whose
            values all lie in [0, 1] (a fraction read as percent).
        """
        convert, need = _READERS[self.format]
        for c in iter_chunks(self.path, skip=self.sniffed.skip, sep=self.sniffed.sep, chunk_rows=chunk_rows):
            if c.shape[1] - 1 < need:
                raise MethrayError(f"{self.path}:{c['line'].iloc[0]}: expected at least {need} columns for {self.format}, found {c.shape[1] - 1}")
            short = (c.iloc[:, :need] == "").any(axis=1).to_numpy()
            check_rows(self.path, c, short, f"{need} non-empty columns for {self.format} ({SHAPES[self.format]})")
            self.stats.rows += len(c)
            out = convert(self.path, c, self.options, self.stats)
            if len(out):
                yield out
        if self.stats.rows == 0:
            raise MethrayError(f"{self.path}: no data rows")
        st = self.stats
        if st.has_percent and self.options.value_scale == "percent" and st.percent_max <= 1 and st.percent_fractional:
            raise MethrayError(
                f"{self.path}: every value of the percent column lies in 0..1 (largest {st.percent_max:g}): "
                f"these look like fractions; set value_scale: fraction for this tissue"
            )

    def read(self) -> pd.DataFrame:
        """All kept rows in one table (for small files and tests; prepare streams instead)."""
        parts = list(self.chunks())
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in COLUMNS})


def read_methylation(path: str, fmt: str | None = None, options: ReadOptions | None = None) -> pd.DataFrame:
    """Read a whole methylation file into one table (columns :data:`COLUMNS`).

    Convenience for small files (genome-wide evaluation, tests); :func:`methray.prepare.prepare`
    streams the file through :class:`MethylationReader` instead.

    Raises
    ------
    MethrayError
        See :class:`MethylationReader` and :meth:`MethylationReader.chunks`.
    """
    return MethylationReader(path, fmt, options or ReadOptions()).read()
