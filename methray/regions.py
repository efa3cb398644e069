"""Genomic regions written as text: ``chrom:start-end``, parsed in one place."""

from __future__ import annotations

import re

# chrom may itself contain ':' (e.g. HLA contigs); the last ':' separates the span
REGION_RE = re.compile(r"^(?P<chrom>\S+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")


def parse_region(text: str) -> tuple[str, int, int]:
    """``chrom:start-end`` -> ``(chrom, start, end)``.

    Coordinates are 0-based half-open (``chr22:100-200`` is 100 bp, from base 100 to 199);
    thousands separators are allowed (``chr22:24,100,000-24,700,000``).

    Raises
    ------
    ValueError
        Not of that form, or ``start >= end`` (configs turn it into a one-line error naming
        the key).
    """
    m = REGION_RE.match(text.strip()) if isinstance(text, str) else None
    start, end = (int(m[k].replace(",", "")) for k in ("start", "end")) if m else (0, 0)
    if not m or start >= end:
        raise ValueError(f"region {text!r}: expected chrom:start-end (0-based half-open, start < end)")
    return m["chrom"], start, end
