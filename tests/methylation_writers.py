"""Write real Bismark coverage rows in every caller's format (test helper).

Each IMR90 row (a CpG, counts of both strands merged, 1-based C on the + strand) becomes, in
turn, a + strand call at the C, a - strand call at the G (``pos + 1``), or both with the
counts split between them, so that preparing any of these files must give back the table
prepared from the Bismark rows. ``extra_contexts`` adds CHG / CHH calls at real non-CpG C's
(both strands) of chr22.fa, which a reader must count and drop.

Usage from the command line (what the README's measurements ran)::

    python tests/methylation_writers.py OUT_DIR [N_ROWS]
"""

from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hg19_chr22"
FORMATS = ("bismark_cov", "bismark_report", "bedmethyl", "bedmethyl_encode", "methyldackel", "cgmap", "allc", "bsmap", "bedgraph")
_COMP = str.maketrans("ACGTNacgtn", "TGCANtgcan")


@dataclass
class Call:
    chrom: str
    pos: int  # 0-based measured C (the G of the CpG for a - strand C)
    strand: str
    m: int
    u: int
    context: str  # CG / CHG / CHH

    @property
    def total(self) -> int:
        return self.m + self.u


def seq_on_strand(fasta: str, chrom: str, pos: int, before: int, after: int, strand: str) -> str:
    """Bases ``before`` upstream to ``after`` downstream of ``pos``, read on ``strand`` (upper case)."""
    fa = _fasta(fasta)
    if strand == "+":
        return fa[chrom][pos - before : pos + after + 1].upper()
    s = fa[chrom][pos - after : pos + before + 1].upper()
    return s.translate(_COMP)[::-1]


_FA: dict = {}


def _fasta(path):
    import pyfaidx

    if path not in _FA:
        _FA[path] = pyfaidx.Fasta(path, as_raw=True, sequence_always_upper=True, rebuild=False)
    return _FA[path]


def imr90_rows(n: int, skip: int = 0) -> list[tuple[str, int, int, int]]:
    """The first ``n`` rows of the IMR90 coverage file: ``(chrom, start 1-based, m, u)``."""
    out = []
    with gzip.open(DATA / "imr90_wgbs.bismark.cov.gz", "rt") as fh:
        for i, line in enumerate(fh):
            if i >= skip + n:
                break
            if i >= skip:
                c, s, _e, _p, m, u = line.split("\t")
                out.append((c, int(s), int(m), int(u)))
    return out


def cpg_calls(rows, *, both_strands: bool = True) -> list[Call]:
    """Calls of the rows: + at the C, - at the G, or split over both (cycling by row)."""
    calls = []
    for i, (c, s, m, u) in enumerate(rows):
        pos = s - 1
        kind = i % 3 if both_strands else 0
        if kind == 2 and m // 2 + u // 2 == 0:
            kind = 0  # too few reads to split
        if kind == 0:
            calls.append(Call(c, pos, "+", m, u, "CG"))
        elif kind == 1:
            calls.append(Call(c, pos + 1, "-", m, u, "CG"))
        else:
            calls.append(Call(c, pos, "+", m // 2, u // 2, "CG"))
            calls.append(Call(c, pos + 1, "-", m - m // 2, u - u // 2, "CG"))
    return calls


def non_cpg_calls(fasta: str, chrom: str, start: int, end: int, n: int, seed: int = 0) -> list[Call]:
    """``n`` CHG / CHH calls at real non-CpG C's of ``chrom:[start, end)``, on both strands."""
    seq = _fasta(fasta)[chrom][start:end].upper()
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(1, len(seq) - 3):
        b = seq[i]
        if b == "C" and seq[i + 1] != "G" and seq[i + 1] in "ACT" and seq[i + 2] in "ACGT":
            calls.append(Call(chrom, start + i, "+", int(rng.integers(0, 5)), int(rng.integers(1, 20)), "CHG" if seq[i + 2] == "G" else "CHH"))
        elif b == "G" and seq[i - 1] != "C" and seq[i - 1] in "AGT" and seq[i - 2] in "ACGT":
            calls.append(Call(chrom, start + i, "-", int(rng.integers(0, 5)), int(rng.integers(1, 20)), "CHG" if seq[i - 2] == "C" else "CHH"))
        if len(calls) >= n:
            break
    return calls


def _pct(m, t) -> float:
    return 100.0 * m / t


def write(fmt: str, calls: list[Call], path: Path, fasta: str, *, header: bool = True, hmc: int = 0) -> Path:
    """Write ``calls`` (sorted by position) in format ``fmt`` to ``path`` (gzipped if it ends in .gz).

    ``hmc``: for ``bedmethyl`` (modkit), move this many reads of each call's methylated count
    to 5hmC (a ``h`` row is written too), as modkit does for 5mC + 5hmC models.
    """
    calls = sorted(calls, key=lambda c: (c.chrom, c.pos, c.strand))
    lines = []
    if fmt in ("methyldackel", "bedgraph"):
        lines.append('track type="bedGraph" description="IMR90 CpG methylation levels"')
    if fmt == "bsmap":
        lines.append("chr\tpos\tstrand\tcontext\tratio\teff_CT_count\tC_count\tCT_count\trev_G_count\trev_GA_count\tCI_lower\tCI_upper")
    if fmt == "allc" and header:
        lines.append("chr\tpos\tstrand\tmc_class\tmc_count\ttotal\tmethylated")
    for c in calls:
        p1 = c.pos + 1
        t = c.total
        if fmt == "bismark_cov":
            lines.append(f"{c.chrom}\t{p1}\t{p1}\t{_pct(c.m, t):g}\t{c.m}\t{c.u}")
        elif fmt == "bismark_report":
            tri = seq_on_strand(fasta, c.chrom, c.pos, 0, 2, c.strand)
            lines.append(f"{c.chrom}\t{p1}\t{c.strand}\t{c.m}\t{c.u}\t{c.context}\t{tri}")
        elif fmt == "bedmethyl":
            h = min(hmc, c.m)
            m5 = c.m - h
            lines.append(f"{c.chrom}\t{c.pos}\t{p1}\tm\t{t}\t{c.strand}\t{c.pos}\t{p1}\t255,0,0\t{t}\t{_pct(m5, t):.2f}\t{m5}\t{c.u}\t{h}\t0\t0\t0\t0")
            if hmc:
                lines.append(f"{c.chrom}\t{c.pos}\t{p1}\th\t{t}\t{c.strand}\t{c.pos}\t{p1}\t255,0,0\t{t}\t{_pct(h, t):.2f}\t{h}\t{c.u}\t{m5}\t0\t0\t0\t0")
        elif fmt == "bedmethyl_encode":
            lines.append(f"{c.chrom}\t{c.pos}\t{p1}\t.\t{min(t, 1000)}\t{c.strand}\t{c.pos}\t{p1}\t0,255,0\t{t}\t{round(_pct(c.m, t))}")
        elif fmt == "methyldackel":
            lines.append(f"{c.chrom}\t{c.pos}\t{p1}\t{round(_pct(c.m, t))}\t{c.m}\t{c.u}")
        elif fmt == "cgmap":
            nuc = "C" if c.strand == "+" else "G"
            di = seq_on_strand(fasta, c.chrom, c.pos, 0, 1, c.strand)
            lines.append(f"{c.chrom}\t{nuc}\t{p1}\t{c.context}\t{di}\t{c.m / t:.4f}\t{c.m}\t{t}")
        elif fmt == "allc":
            tri = seq_on_strand(fasta, c.chrom, c.pos, 0, 2, c.strand)
            lines.append(f"{c.chrom}\t{p1}\t{c.strand}\t{tri}\t{c.m}\t{t}\t{int(c.m > 0)}")
        elif fmt == "bsmap":
            five = seq_on_strand(fasta, c.chrom, c.pos, 2, 2, c.strand)
            lines.append(f"{c.chrom}\t{p1}\t{c.strand}\t{five}\t{c.m / t:.3f}\t{t:.2f}\t{c.m}\t{t}\t0\t0\t0.000\t1.000")
        elif fmt == "bedgraph":
            lines.append(f"{c.chrom}\t{c.pos}\t{p1}\t{_pct(c.m, t):.6f}")
        else:
            raise ValueError(fmt)
    text = "\n".join(lines) + "\n"
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        Path(path).write_text(text)
    return Path(path)


def main(out: str, n: int = 3000) -> None:
    """Write the first ``n`` IMR90 rows in every format (with CHG/CHH calls where the format has contexts)."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    fasta = str(DATA / "chr22.fa")
    rows = imr90_rows(n)
    calls = cpg_calls(rows)
    extra = non_cpg_calls(fasta, "chr22", rows[0][1] - 1, rows[-1][1], 2 * n)
    with gzip.open(out_dir / "imr90.bismark.cov.gz", "wt") as fh:
        for c, s, m, u in rows:
            fh.write(f"{c}\t{s}\t{s}\t{_pct(m, m + u):g}\t{m}\t{u}\n")
    for fmt in FORMATS:
        with_contexts = fmt in ("bismark_report", "cgmap", "allc", "bsmap")
        path = write(fmt, calls + (extra if with_contexts else []), out_dir / f"imr90.{fmt}.txt.gz", fasta, hmc=1 if fmt == "bedmethyl" else 0)
        tissue = f"{{name: imr90, path: {path}" + (", modkit_5hmc: add" if fmt == "bedmethyl" else "") + "}"
        (out_dir / f"{fmt}.yaml").write_text(
            f"run_name: {fmt}\ndata_dir: {DATA}\nout_dir: {out_dir / 'runs' / fmt}\nreference: chr22.fa\n"
            f"cpg_islands: cpg_islands.bed\ntissues: [{tissue}]\nprepare: {{min_coverage: 1}}\n"
        )
        print(out_dir / f"{fmt}.yaml")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3000)
