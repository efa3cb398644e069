"""Section 1: window encoding throughput, methray's encoder against two baselines.

- ``methray``: :meth:`methray.genome.Reference.windows` + :func:`methray.encoding.one_hot`
  (contig already cached, as in a Ray worker after its first batch);
- ``methray encode_batch``: :func:`methray.windows.encode_batch`, the Ray Data function
  (adds chromosome grouping and the pass-through columns);
- ``limit``: a numpy lookup-table one-hot of windows gathered beforehand (no gather at all),
  the practical ceiling of any numpy encoder;
- ``naive``: what a user writes first: one pyfaidx fetch per CpG and a per-base Python
  one-hot, timed on an evenly spaced subset and reported per window.
"""

from __future__ import annotations

import time

import numpy as np
import pyfaidx

from methray.encoding import ONE_HOT, WindowSpec, one_hot
from methray.genome import Reference
from methray.windows import encode_batch


def best_of(fn, repeats: int) -> float:
    """Shortest wall time (s) of ``repeats`` calls of ``fn`` (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def naive_windows(fasta_path: str, chrom: str, positions: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """One pyfaidx fetch per CpG and a per-base Python one-hot, ``(N, L, 4) uint8``."""
    fasta = pyfaidx.Fasta(fasta_path, as_raw=True)
    up = spec.length // 2
    out = []
    for p in positions.tolist():
        if spec.exclude_cpg:
            seq = fasta[chrom][p - up : p] + fasta[chrom][p + 2 : p + 2 + spec.length - up]
        else:
            seq = fasta[chrom][p - up : p - up + spec.length]
        out.append([[1 if base == b else 0 for b in "ACGT"] for base in seq.upper()])
    return np.array(out, dtype=np.uint8)


def run(fasta: str, chrom: str, positions: np.ndarray, spec: WindowSpec, *, naive_sites: int, repeats: int) -> dict:
    """Measure the encoders on ``positions`` (0-based CpG C's on ``chrom``).

    Returns
    -------
    dict
        Per encoder ``windows_per_s`` and ``mb_per_s`` (MiB/s of uint8 one-hot output), the
        ratios ``vs_limit`` and ``vs_naive``, and the one-off contig load time (s).
    """
    ref = Reference(fasta)
    start = time.perf_counter()
    ref.codes(chrom)
    load_s = time.perf_counter() - start
    n = len(positions)
    bytes_per_window = spec.length * 4
    batch = {"chrom": np.full(n, chrom, dtype=object), "pos": positions, "beta": np.zeros(n)}
    pregathered = ref.windows(chrom, positions, spec)
    words = ONE_HOT.view(np.uint32).ravel()
    seconds = {
        "methray": best_of(lambda: one_hot(ref.windows(chrom, positions, spec)), repeats),
        "methray_encode_batch": best_of(lambda: encode_batch(batch, fasta, spec.length, spec.exclude_cpg), repeats),
        "limit": best_of(lambda: words[pregathered].view(np.uint8), repeats),
    }
    subset = positions[np.linspace(0, n - 1, min(naive_sites, n)).astype(int)]
    naive = naive_windows(fasta, chrom, subset, spec)
    if not np.array_equal(naive, one_hot(ref.windows(chrom, subset, spec))):
        raise AssertionError("naive and methray encoders disagree")
    naive_s = best_of(lambda: naive_windows(fasta, chrom, subset, spec), 1)
    rates = {k: n / s for k, s in seconds.items()}
    rates["naive"] = len(subset) / naive_s
    out = {
        "window": {"length": spec.length, "exclude_cpg": spec.exclude_cpg},
        "sites": n,
        "naive_sites": len(subset),
        "contig_load_s": round(load_s, 3),
        "encoders": {k: {"windows_per_s": round(r), "mb_per_s": round(r * bytes_per_window / 2**20, 1)} for k, r in rates.items()},
    }
    out["vs_limit"] = round(rates["methray"] / rates["limit"], 3)
    out["vs_naive"] = round(rates["methray"] / rates["naive"], 1)
    out["encode_batch_vs_limit"] = round(rates["methray_encode_batch"] / rates["limit"], 3)
    return out
